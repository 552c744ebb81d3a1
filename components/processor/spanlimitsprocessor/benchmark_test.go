package spanlimitsprocessor

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor/internal/metadata"
)

// BenchmarkProcessTraces is span_limits' cost per span on a gateway's
// steady path: batches of the agents' size (4096 spans of 32 services),
// every span fitting (one size computation per resource), and the same
// with one span over max_span_size among them.
func BenchmarkProcessTraces(b *testing.B) {
	batch := func(big bool) ptrace.Traces {
		td := ptrace.NewTraces()
		for s := range 32 {
			var fill func(ptrace.Span)
			if big && s == 0 {
				fill = func(sp ptrace.Span) { sp.Attributes().PutStr("payload", strings.Repeat("p", 2*mib)) }
			}
			request("service-"+itoa(s), 128, fill).ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
		}
		return td
	}
	for _, tc := range []struct {
		name string
		big  bool
	}{{"all fit", false}, {"one over the size", true}} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type),
				createDefaultConfig(), consumertest.NewNop())
			require.NoError(b, err)
			require.NoError(b, p.Start(context.Background(), componenttest.NewNopHost()))
			defer func() { require.NoError(b, p.Shutdown(context.Background())) }()
			inputs := make([]ptrace.Traces, b.N)
			for i := range inputs {
				inputs[i] = batch(tc.big)
			}
			spans := inputs[0].SpanCount()
			b.ResetTimer()
			for i := range b.N {
				if err := p.ConsumeTraces(context.Background(), inputs[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
		})
	}
}
