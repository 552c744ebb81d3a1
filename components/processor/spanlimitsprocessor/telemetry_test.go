package spanlimitsprocessor

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor/internal/metadatatest"
)

func point(v int64, service string) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Value: v, Attributes: attribute.NewSet(attribute.String("service.name", service))}
}

var ignoreTime = []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars()}

// TestTelemetryNamesTheSender: spans truncated and dropped are counted by
// the sender's service.name, and logged with it and the trace; past
// max_service_names, further names count as "other".
func TestTelemetryNamesTheSender(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := metadatatest.NewSettings(tt)
	set.Logger = zap.New(core)
	cfg := createDefaultConfig().(*Config)
	cfg.MaxServiceNames = 2
	p, err := NewFactory().CreateTraces(context.Background(), set, cfg, new(consumertest.TracesSink))
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })

	long := func(s ptrace.Span) { s.Attributes().PutStr("payload", strings.Repeat("p", 2*mib)) }
	uncuttable := func(s ptrace.Span) { s.Attributes().PutStr(strings.Repeat("k", 2*mib), "v") }
	for _, r := range []ptrace.Traces{
		request("checkout", 3, long),
		request("checkout", 3, long),
		request("payments", 3, uncuttable),
		request("third", 3, long),
		request("fourth", 3, long),
	} {
		require.NoError(t, p.ConsumeTraces(context.Background(), r))
	}
	metadatatest.AssertEqualProcessorSpanLimitsSpansTruncated(t, tt, []metricdata.DataPoint[int64]{
		point(2, "checkout"), point(2, otherServices),
	}, ignoreTime...)
	metadatatest.AssertEqualProcessorSpanLimitsSpansDropped(t, tt, []metricdata.DataPoint[int64]{
		point(1, "payments"),
	}, ignoreTime...)

	truncated := logs.FilterMessageSnippet("Truncated a span").All()
	require.Len(t, truncated, 4)
	assert.Equal(t, "checkout", truncated[0].ContextMap()["service.name"])
	assert.Equal(t, "bb000000000000000000000000000000", truncated[0].ContextMap()["trace_id"])
	assert.Equal(t, "fourth", truncated[3].ContextMap()["service.name"], "the log names services the metric folds")
	dropped := logs.FilterMessageSnippet("Dropped a span").All()
	require.Len(t, dropped, 1)
	assert.Equal(t, "payments", dropped[0].ContextMap()["service.name"])
}

// TestServiceNameLabelIsBounded: a hostile service.name (long, invalid
// UTF-8) becomes a bounded, valid label.
func TestServiceNameLabelIsBounded(t *testing.T) {
	td := request(strings.Repeat("\xff", 10)+strings.Repeat("s", 1000), 1, nil)
	name := serviceName(td.ResourceSpans().At(0).Resource())
	assert.LessOrEqual(t, len(name), maxServiceNameLength)
	assert.True(t, strings.HasPrefix(name, "\uFFFD"))
	assert.Equal(t, "unknown_service", serviceName(ptrace.NewResourceSpans().Resource()))
}
