package rebalanceguardprocessor

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadata"
)

// BenchmarkConsumeTraces measures a batch of 1000 spans (50 traces of 20
// spans, as agents batch them, each span with 8 attributes under a resource
// with 6, as instrumented applications and the agents' k8s_attributes
// give them) owned by this gateway with a 5-gateway ring:
// the common path (no recent change), and within moved_in_window of a
// rolling-update step (a gateway added, then one removed), where every
// trace is checked against the two replaced rings. Reported per span.
func BenchmarkConsumeTraces(b *testing.B) {
	members := []string{gwA, gwB, gwC, "10.0.0.4:4317", "10.0.0.5:4317"}
	b.Run("steady", func(b *testing.B) { benchmarkConsumeTraces(b, members, nil) })
	b.Run("after_rolling_step", func(b *testing.B) {
		surged := append(append([]string(nil), members...), "10.0.0.6:4317")
		rolled := slices.DeleteFunc(slices.Clone(surged), func(m string) bool { return m == gwB })
		benchmarkConsumeTraces(b, members, [][]string{surged, rolled})
	})
}

func benchmarkConsumeTraces(b *testing.B, members []string, changes [][]string) {
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
	for _, m := range changes {
		clk.advance(300 * time.Millisecond)
		g.onMembership(m)
	}

	ring := g.ring
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	for _, k := range []string{"service.name", "service.namespace", "k8s.pod.name", "k8s.namespace.name", "k8s.node.name", "k8s.cluster.name"} {
		rs.Resource().Attributes().PutStr(k, "value-of-"+k)
	}
	spans := rs.ScopeSpans().AppendEmpty().Spans()
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
			attrs := sp.Attributes()
			attrs.PutStr("http.request.method", "GET")
			attrs.PutInt("http.response.status_code", 200)
			attrs.PutStr("http.route", "/api/cart/{id}")
			attrs.PutStr("url.path", "/api/cart/42")
			attrs.PutStr("server.address", "cart.shop.svc")
			attrs.PutInt("server.port", 8080)
			attrs.PutStr("network.protocol.version", "1.1")
			attrs.PutStr("user_agent.original", "shop-frontend/1.0")
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

// BenchmarkMembershipChange measures one change of the gateway set (a
// gateway joins a tier of N) as the guard of one of the N takes it, with
// 50000 traces in flight here (first seen a second ago, so undecided):
// the new ring (N x 200 points), the scan of the traces in flight for the
// ones whose owner changed, and a marker for each of them (about 1/(N+1)
// moved to the new gateway). Reported per change; markers/op is how many
// traces it marked.
func BenchmarkMembershipChange(b *testing.B) {
	for _, n := range []int{3, 50, 200} {
		b.Run(fmt.Sprintf("gateways=%d", n), func(b *testing.B) { benchmarkMembershipChange(b, n) })
	}
}

func benchmarkMembershipChange(b *testing.B, n int) {
	const inFlight = 50_000
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("10.244.%d.%d:4317", i/250, i%250+1)
	}
	joined := append(slices.Clone(members), "10.244.99.1:4317")
	self := members[0]
	// The traces in flight, one span each, in batches as agents send them.
	var batches []ptrace.Traces
	for i := 0; i < inFlight; i += 1000 {
		td := ptrace.NewTraces()
		spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for j := i; j < min(i+1000, inFlight); j++ {
			sp := spans.AppendEmpty()
			sp.SetTraceID(pcommon.TraceID{byte(j >> 16), byte(j >> 8), byte(j), 0x7c, 1, 2, 3})
			sp.SetSpanID(pcommon.SpanID{1})
		}
		batches = append(batches, td)
	}
	var markers int64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		cfg := createDefaultConfig().(*Config)
		cfg.Self, cfg.DecisionWait, cfg.MaxTraces = self, 10*time.Second, 2*inFlight
		cfg.Resolver.Static = &StaticResolver{Hostnames: members}
		clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		sink := new(consumertest.TracesSink)
		g, err := newGuard(processortest.NewNopSettings(metadata.Type), cfg, sink, &fakeMembership{initial: members}, clk)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Start(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		clk.advance(time.Minute)
		for _, td := range batches {
			if err := g.ConsumeTraces(context.Background(), td); err != nil {
				b.Fatal(err)
			}
		}
		sink.Reset()
		clk.advance(time.Second)
		b.StartTimer()

		g.onMembership(joined)

		b.StopTimer()
		markers += int64(sink.SpanCount())
		_ = g.Shutdown(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(markers)/float64(b.N), "markers/op")
}
