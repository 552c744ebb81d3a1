package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadatatest"
)

// telemetryFixture is a fixture whose guard reports to an in-memory meter
// and log.
func telemetryFixture(t *testing.T, self string, initial []string, mutate ...func(*Config)) (*fixture, *componenttest.Telemetry, *observer.ObservedLogs) {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := metadatatest.NewSettings(tt)
	set.Logger = zap.New(core)
	return newFixtureWith(t, set, self, initial, mutate...), tt, logs
}

func point(v int64, attrs ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Value: v, Attributes: attribute.NewSet(attrs...)}
}

var ignoreTime = []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars()}

// TestSelfMissingFromTheRingIsLoud: a gateway whose self does not match how
// the resolver lists it (here: the set lists other addresses only) would
// not know its own traces. self_in_ring says 0 and a warning names self and the
// members; once the set holds self, self_in_ring says 1.
func TestSelfMissingFromTheRingIsLoud(t *testing.T) {
	f, tt, logs := telemetryFixture(t, gwA, []string{gwB, gwC})
	metadatatest.AssertEqualProcessorRebalanceGuardSelfInRing(t, tt, []metricdata.DataPoint[int64]{point(0)}, ignoreTime...)
	warnings := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("not in the gateway set").All()
	require.Len(t, warnings, 1)
	assert.Equal(t, gwA, warnings[0].ContextMap()["self"])

	f.clock.advance(time.Second)
	f.src.onChange([]string{gwA, gwB, gwC})
	metadatatest.AssertEqualProcessorRebalanceGuardSelfInRing(t, tt, []metricdata.DataPoint[int64]{point(1)}, ignoreTime...)
	assert.Len(t, logs.FilterLevelExact(zapcore.WarnLevel).All(), 1, "no warning once self is in the set")
}

// TestTelemetryCountsTheGuardsWork: ring changes and members, spans and
// traces marked by reason, markers injected.
func TestTelemetryCountsTheGuardsWork(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC}
	f, tt, _ := telemetryFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	moving := nthTraceOwnedBy(t, 0, before, gwA, after, gwC)
	lagging := nthTraceOwnedBy(t, 1, before, gwA, after, gwC)
	notRouted := traceOwnedBy(t, before, gwB, after, gwB)
	consume(t, f, moving, 2)
	f.clock.advance(time.Second)
	f.src.onChange(after)     // moving gets a moved_out marker
	consume(t, f, lagging, 3) // an agent still on the replaced ring: marked not_owned
	// Past the change + agent_lag + clock_skew: a sender that does not
	// route, counted but not marked.
	f.clock.advance(3 * time.Second)
	consume(t, f, notRouted, 4)

	metadatatest.AssertEqualProcessorRebalanceGuardRingChanges(t, tt, []metricdata.DataPoint[int64]{point(2)}, ignoreTime...)
	metadatatest.AssertEqualProcessorRebalanceGuardRingMembers(t, tt, []metricdata.DataPoint[int64]{point(3)}, ignoreTime...)
	metadatatest.AssertEqualProcessorRebalanceGuardMarkersInjected(t, tt, []metricdata.DataPoint[int64]{point(1)}, ignoreTime...)
	metadatatest.AssertEqualProcessorRebalanceGuardSpansMarked(t, tt, []metricdata.DataPoint[int64]{point(3)}, ignoreTime...)
	metadatatest.AssertEqualProcessorRebalanceGuardSpansNotOwned(t, tt, []metricdata.DataPoint[int64]{point(7)}, ignoreTime...)
	metadatatest.AssertEqualProcessorRebalanceGuardTracesMarked(t, tt, []metricdata.DataPoint[int64]{
		point(1, attribute.String("reason", reasonMovedOut)),
		point(1, attribute.String("reason", reasonNotOwned)),
	}, ignoreTime...)
}

// TestTrackerOverflowIsCounted: traces forgotten while still in flight
// (max_traces too small) are counted and logged, once per sweep.
func TestTrackerOverflowIsCounted(t *testing.T) {
	f, tt, logs := telemetryFixture(t, gwA, []string{gwA}, func(c *Config) { c.MaxTraces = 10 })
	for i := range 25 {
		consume(t, f, pcommon.TraceID{byte(i), 7, 7}, 1)
	}
	require.Eventually(t, func() bool {
		_, err := tt.GetMetric("otelcol_processor_rebalance_guard_traces_evicted")
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "the sweep (once a second) reports evictions")
	metadatatest.AssertEqualProcessorRebalanceGuardTracesEvicted(t, tt, []metricdata.DataPoint[int64]{point(15)}, ignoreTime...)
	assert.NotEmpty(t, logs.FilterMessageSnippet("max_traces is too small").All())
}
