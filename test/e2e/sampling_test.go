package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// shareBound is how far a gateway's share of traces may stray from 1/3.
// The spread comes from upstream's ring, not from sampling noise: it places
// 200 crc32 points per endpoint, and the endpoints here are 127.0.0.1 with
// random ports. Simulating that ring (v0.161.0) over 2000 random port
// triples and 30000 trace IDs each, the largest deviation from 1/3 was
// p50 4.2%, p99 10.5%, max 16.5%. 18 points never flakes yet still fails
// when a gateway is starved or routing ignores the trace ID.
const shareBound = 0.18

// TestTailSamplingKeepsInterestingTracesWhole is the product's promise,
// through 2 agents and 3 gateways: every error and slow trace reaches the
// backend complete, no trace arrives in part, normal traces are kept at the
// probabilistic rate, RED metrics count every span once, and the gateways
// share the traces evenly.
func TestTailSamplingKeepsInterestingTracesWhole(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: gatewaySet})
	plans := plan(t, *flagTraces, 0)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	settle(t, topo, 3*time.Second, 2*time.Minute)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	counters := topo.Counters()
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %5d complete %5d partial %d lost %5d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}

	t.Run("error and slow traces arrive complete, no trace partially", func(t *testing.T) {
		assertKeptWhole(t, ev)
		assert.Zero(t, ev.Unknown, "spans of traces nobody sent")
	})

	t.Run("normal traces kept at the probabilistic rate", func(t *testing.T) { assertNormalRate(t, ev) })

	t.Run("gateways share traces evenly", func(t *testing.T) {
		require.Len(t, counters.GatewayNewTraces, 3)
		var total float64
		for _, v := range counters.GatewayNewTraces {
			total += v
		}
		require.Positive(t, total)
		for i, v := range counters.GatewayNewTraces {
			share := v / total
			t.Logf("gateway-%d: %.0f traces (%.1f%%)", i+1, v, 100*share)
			assert.InDelta(t, 1.0/3, share, shareBound, "gateway-%d share", i+1)
		}
	})

	t.Run("span metrics count every span once", func(t *testing.T) {
		want := map[string]float64{}
		for _, p := range plans {
			for _, s := range p.Spans {
				want[callsKey(s.Service, s.Error)]++
			}
		}
		got, instances := spanMetricsCalls(t, topo.Sink.Metrics())
		assert.Equal(t, want, got, "calls per service and status, summed over gateways")
		assert.Len(t, instances, 3, "distinct collector.instance.id values (one per gateway)")
	})

	t.Run("no two gateways emit the same series", func(t *testing.T) {
		owner := map[string]string{}
		for _, g := range topo.Gateways {
			s, err := harness.ScrapeMetrics(g.Ports.Prometheus)
			require.NoError(t, err)
			series := 0
			for name, fam := range s {
				if !strings.HasPrefix(name, "traces_span_metrics_calls") {
					continue
				}
				for _, m := range fam.GetMetric() {
					var labels []string
					for _, l := range m.GetLabel() {
						labels = append(labels, l.GetName()+"="+l.GetValue())
					}
					sort.Strings(labels)
					key := name + "{" + strings.Join(labels, ",") + "}"
					if prev, dup := owner[key]; dup {
						t.Errorf("series %s emitted by %s and %s", key, prev, g.Name)
					}
					owner[key] = g.Name
					series++
				}
			}
			assert.Positive(t, series, "%s exposes no span metrics", g.Name)
		}
	})
}

// TestSenderStraightAtOneGatewayGetsThePolicyShare: a sender that does
// not route by trace ID (another collector, an SDK pointed at a gateway
// pod) sends every span to one of three gateways while the set is steady.
// Two thirds of its traces belong, by the ring, to other gateways; no
// agent could have routed them here. They are sampled by the policies
// like any other: normal traces at the probabilistic share, not kept
// because the guard took them for a lagging agent's (it did: 70% of
// normal traces kept where the policy keeps 10%), and every error and slow
// trace whole.
func TestSenderStraightAtOneGatewayGetsThePolicyShare(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Gateways: 3, GatewaySet: gatewaySet})
	// A gateway in the static set it starts with cannot know where
	// traces begun before its start were routed: for the agents' lag plus
	// the clock skew (the profile's static defaults, 10s + 2s) it keeps
	// traces owned elsewhere. This test is about the steady state after.
	time.Sleep(13 * time.Second)
	plans := plan(t, 1200, 7)
	straight := topo.Gateways[0].OTLPEndpoint()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One connection per node of the plan, both to the same gateway.
	sent, err := harness.Send(ctx, plans, []string{straight, straight}, nil)
	require.NoError(t, err)
	require.Zero(t, sent.SpansFailed, "the gateway refused spans")
	settle(t, topo, 3*time.Second, 2*time.Minute)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %5d complete %5d partial %d lost %5d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	scrape, err := harness.ScrapeMetrics(topo.Gateways[0].Ports.Telemetry)
	require.NoError(t, err)
	notOwned := scrape.Sum(harness.MetricGuardSpansNotOwned)
	t.Logf("spans the ring gives to other gateways: %.0f of %d; traces kept by policy %v", notOwned, sent.SpansSent, topo.Counters().KeptByPolicy)
	require.Positive(t, notOwned, "the traffic must include traces other gateways own, or this proves nothing")
	assertKeptWhole(t, ev)
	assertNormalRate(t, ev)
}

func callsKey(service string, isError bool) string {
	status := "STATUS_CODE_UNSET"
	if isError {
		status = "STATUS_CODE_ERROR"
	}
	return service + "/" + status
}

// spanMetricsCalls sums the latest value of every traces.span.metrics.calls
// series (cumulative) by service and status, and lists the instance IDs.
func spanMetricsCalls(t *testing.T, payloads []pmetric.Metrics) (map[string]float64, map[string]bool) {
	t.Helper()
	type point struct {
		ts    pcommon.Timestamp
		value float64
		key   string
	}
	latest := map[string]point{}
	instances := map[string]bool{}
	for _, md := range payloads {
		rms := md.ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			rm := rms.At(i)
			service, _ := rm.Resource().Attributes().Get("service.name")
			sms := rm.ScopeMetrics()
			for j := 0; j < sms.Len(); j++ {
				ms := sms.At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					m := ms.At(k)
					if m.Name() != "traces.span.metrics.calls" {
						continue
					}
					require.Equal(t, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
					dps := m.Sum().DataPoints()
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						inst, ok := dp.Attributes().Get("collector.instance.id")
						require.True(t, ok, "data point without collector.instance.id")
						instances[inst.AsString()] = true
						status, _ := dp.Attributes().Get("status.code")
						series := fmt.Sprintf("%v|%v", rm.Resource().Attributes().AsRaw(), dp.Attributes().AsRaw())
						if p, seen := latest[series]; !seen || dp.Timestamp() >= p.ts {
							latest[series] = point{dp.Timestamp(), float64(dp.IntValue()), service.AsString() + "/" + status.AsString()}
						}
					}
				}
			}
		}
	}
	sums := map[string]float64{}
	for _, p := range latest {
		sums[p.key] += p.value
	}
	return sums, instances
}
