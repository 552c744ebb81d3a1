package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// FuzzConsumeTraces feeds the span path arbitrary OTLP payloads (malformed
// and zero trace IDs, empty resources and batches, large batches) around a
// membership change: it must not panic, must forward every span, and must
// inject no more markers than it tracks traces.
func FuzzConsumeTraces(f *testing.F) {
	seed := func(td ptrace.Traces) {
		data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err == nil {
			f.Add(data, uint8(3))
		}
	}
	seed(ptrace.NewTraces())
	now := time.Unix(1_700_000_000, 0)
	seed(spansOf(pcommon.TraceID{}, 3, now, now)) // the invalid all-zero trace ID
	seed(spansOf(pcommon.TraceID{1, 2, 3}, 1, now, now))
	big := ptrace.NewTraces()
	for i := range 50 {
		spans := big.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for j := range 40 {
			sp := spans.AppendEmpty()
			sp.SetTraceID(pcommon.TraceID{byte(i), byte(j % 7)})
		}
	}
	seed(big)
	empty := ptrace.NewTraces()
	empty.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	seed(empty)
	f.Add([]byte{0x0a, 0xff, 0xff}, uint8(1))

	f.Fuzz(func(t *testing.T, payload []byte, gateways uint8) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		if err != nil {
			return // the receiver rejects what does not decode
		}
		members := []string{gwA, gwB, gwC, "10.0.0.4:4317"}[:1+int(gateways)%4]
		fx := newFixture(t, gwA, members, func(c *Config) { c.MaxTraces = 64 })
		want := td.SpanCount()
		require.NoError(t, fx.g.ConsumeTraces(context.Background(), td))
		fx.clock.advance(time.Second)
		fx.src.onChange([]string{gwA, gwB})
		td2, _ := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		require.NoError(t, fx.g.ConsumeTraces(context.Background(), td2))
		require.NoError(t, fx.g.Shutdown(context.Background()))

		// Every received span comes out; beyond them come only markers, at
		// most one per tracked trace at the change and at shutdown (the
		// payload may hold spans that look like markers, so they are
		// counted, not matched).
		total := 0
		for _, out := range fx.sink.AllTraces() {
			total += out.SpanCount()
		}
		require.GreaterOrEqual(t, total, 2*want, "spans lost")
		require.LessOrEqual(t, total-2*want, 2*64, "more markers than tracked traces")
		fx.g.mu.Lock()
		require.LessOrEqual(t, fx.g.tracker.len(), 64)
		fx.g.mu.Unlock()
	})
}
