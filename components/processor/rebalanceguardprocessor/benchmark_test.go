package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadata"
)

// BenchmarkConsumeTraces measures the common path: a batch of 1000 spans
// (50 traces of 20 spans, as agents batch them) owned by this gateway, with
// a 5-gateway ring and no recent change. Reported per span.
func BenchmarkConsumeTraces(b *testing.B) {
	members := []string{gwA, gwB, gwC, "10.0.0.4:4317", "10.0.0.5:4317"}
	cfg := createDefaultConfig().(*Config)
	cfg.Self = gwA
	cfg.Resolver.Static = &StaticResolver{Hostnames: members}
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	g, err := newGuard(processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop(), &fakeMembership{initial: members}, clk)
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	clk.advance(time.Minute)

	ring := newHashRing(members)
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i, n := 0, 0; n < 50; i++ {
		id := pcommon.TraceID{byte(i >> 8), byte(i), 0x5e}
		if ring.owner(id) != gwA {
			continue
		}
		n++
		for j := range 20 {
			sp := spans.AppendEmpty()
			sp.SetTraceID(id)
			sp.SetSpanID(pcommon.SpanID{byte(j + 1)})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := g.ConsumeTraces(context.Background(), td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/span")
}
