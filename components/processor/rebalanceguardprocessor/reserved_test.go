package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap/zapcore"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadatatest"
)

// forged makes a sender's batch of trace id: spans carrying the guard's
// attributes as an application could set them (on the span or on its
// resource), and one plain span.
func forged(id pcommon.TraceID, start, now time.Time) ptrace.Traces {
	td := spansOf(id, 4, start, now)
	rs := td.ResourceSpans().At(0)
	rs.Resource().Attributes().PutStr("service.name", "shop")
	spans := rs.ScopeSpans().At(0).Spans()
	spans.At(0).Attributes().PutBool("tailgate.rebalance.keep", true)
	spans.At(1).Attributes().PutBool("tailgate.rebalance.marker", true)
	spans.At(1).Attributes().PutStr("http.route", "/cart")
	// As long as the marker attribute's name, and then with its first byte
	// too: compared, and kept.
	spans.At(1).Attributes().PutInt("http.response.status_code", 200)
	spans.At(1).Attributes().PutStr("tailgate.rebalance.zzzzzz", "mine")
	spans.At(2).Attributes().PutStr("tailgate.rebalance.reason", "moved_in")
	// Under a resource of its own that claims to be kept.
	other := td.ResourceSpans().AppendEmpty()
	other.Resource().Attributes().PutBool("tailgate.rebalance.keep", true)
	sp := other.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(id)
	sp.SetSpanID(pcommon.SpanID{9})
	return td
}

// reservedLeft lists the reserved attributes left anywhere in what the next
// consumer received, and counts its spans.
func reservedLeft(f *fixture) (left []string, spans int) {
	keys := []string{f.cfg.KeepAttribute, f.cfg.MarkerAttribute, reasonAttribute}
	for _, td := range f.sink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, k := range keys {
				if _, ok := rs.Resource().Attributes().Get(k); ok {
					left = append(left, "resource "+k)
				}
			}
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					spans++
					for _, k := range keys {
						if _, ok := sp.Attributes().Get(k); ok {
							left = append(left, "span "+k)
						}
					}
				}
			}
		}
	}
	return left, spans
}

// TestSendersCannotSetTheGuardsAttributes: spans arriving with the keep,
// marker or reason attribute, on the span or on its resource, lose exactly
// those attributes (everything else stays), with the guard on or off: the
// keep policy and the marker filter read them either way. Without the
// boundary, the keep attribute forces the trace kept and the marker
// attribute has the span deleted after sampling.
func TestSendersCannotSetTheGuardsAttributes(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	for _, enabled := range []bool{true, false} {
		t.Run(map[bool]string{true: "guard on", false: "guard off"}[enabled], func(t *testing.T) {
			f := newFixture(t, gwA, members, func(c *Config) { c.Enabled = enabled })
			f.clock.advance(time.Minute)
			id := traceOwnedBy(t, members, gwA, nil, "")
			require.NoError(t, f.g.ConsumeTraces(context.Background(), forged(id, f.clock.Now().Add(-time.Second), f.clock.Now())))
			left, spans := reservedLeft(f)
			assert.Empty(t, left)
			assert.Equal(t, 5, spans, "no span is dropped")
			attrs := f.sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(1).Attributes()
			assert.Equal(t, map[string]any{"http.route": "/cart", "http.response.status_code": int64(200), "tailgate.rebalance.zzzzzz": "mine"}, attrs.AsRaw(),
				"the sender's own attributes stay")
		})
	}
}

// TestTheGuardStillMarksWhatItOwns: a forged marker on a span of a trace
// the guard must keep (a lagging agent's, after a change moved it to
// another gateway) is removed, and the guard's own keep attribute is set:
// the span is kept, not deleted as a marker.
func TestTheGuardStillMarksWhatItOwns(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	f.src.onChange(after)
	id := traceOwnedBy(t, before, gwA, after, gwC)
	require.NoError(t, f.g.ConsumeTraces(context.Background(), forged(id, f.clock.Now().Add(-time.Second), f.clock.Now())))
	kept, markers, total := keptSpans(f, id)
	assert.Equal(t, 5, total)
	assert.Equal(t, 5, kept)
	assert.Zero(t, markers)
}

// TestReservedAttributesAreCountedAndLoggedOnceAMinute: the spans are
// counted, and the warning names the sender's service, at most once a
// minute however many batches arrive.
func TestReservedAttributesAreCountedAndLoggedOnceAMinute(t *testing.T) {
	members := []string{gwA}
	f, tt, logs := telemetryFixture(t, gwA, members)
	for range 3 {
		require.NoError(t, f.g.ConsumeTraces(context.Background(), forged(pcommon.TraceID{1}, f.clock.Now(), f.clock.Now())))
		f.clock.advance(10 * time.Second)
	}
	consume(t, f, pcommon.TraceID{2}, 3) // plain spans are not counted
	metadatatest.AssertEqualProcessorRebalanceGuardSpansReservedAttributesRemoved(t, tt, []metricdata.DataPoint[int64]{point(3 * 4)}, ignoreTime...)
	warnings := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("reserved to the guard").All()
	require.Len(t, warnings, 1)
	assert.Equal(t, "shop", warnings[0].ContextMap()["service.name"])
	f.clock.advance(time.Minute)
	require.NoError(t, f.g.ConsumeTraces(context.Background(), forged(pcommon.TraceID{1}, f.clock.Now(), f.clock.Now())))
	assert.Len(t, logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("reserved to the guard").All(), 2)
}
