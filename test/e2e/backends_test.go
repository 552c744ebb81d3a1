package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// startSink starts one more backend, closed when the test ends.
func startSink(t *testing.T) *harness.Sink {
	t.Helper()
	s, err := harness.NewSink()
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// shards is a sharded backend read as one: a trace's spans from every shard.
type shards []*harness.Sink

func (s shards) SpansOf(id pcommon.TraceID) map[pcommon.SpanID]int {
	out := map[pcommon.SpanID]int{}
	for _, sink := range s {
		for span, n := range sink.SpansOf(id) {
			out[span] += n
		}
	}
	return out
}

// keptTraces are the trace IDs a backend received.
func keptTraces(s *harness.Sink) map[pcommon.TraceID]bool {
	out := map[pcommon.TraceID]bool{}
	for _, id := range s.TraceIDs() {
		out[id] = true
	}
	return out
}

// TestTwoBackendsEachReceiveEveryKeptTrace exports kept traces to two OTLP
// backends at once (the sampling pipeline's exporters) while the second is down
// for the first 15 seconds: the first receives traces throughout the
// outage (the second's queue holds only the second's data), and in the end
// both hold every error and slow trace complete, no trace in part, and the
// same traces.
func TestTwoBackendsEachReceiveEveryKeptTrace(t *testing.T) {
	second := startSink(t)
	set := withGatewaySet(
		harness.BackendsSet("otlp_grpc/backend_memory", "otlp_grpc/backend_secondary"),
		"exporters::otlp_grpc/backend_secondary::endpoint="+second.Endpoint(),
	)
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 2, GatewaySet: set})
	second.Down()
	outage := time.Now()

	plans := plan(t, 1200, 300)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	eventually(t, 30*time.Second, "the first backend receives while the second is down", func() (bool, string) {
		n := topo.Sink.SpanCount()
		return n > 0, "spans at the first backend: 0"
	})
	require.Zero(t, second.SpanCount(), "the second backend was down")
	time.Sleep(time.Until(outage.Add(15 * time.Second)))
	require.NoError(t, second.Up())
	settle(t, topo, 3*time.Second, 2*time.Minute)

	for name, backend := range map[string]*harness.Sink{"first": topo.Sink, "second": second} {
		t.Run(name+" backend holds every kept trace whole", func(t *testing.T) {
			ev := harness.Evaluate(plans, sent, backend)
			for _, k := range harness.Kinds {
				o := ev.ByKind[k]
				t.Logf("%-6s sent %4d complete %4d partial %d lost %4d", k, o.Sent, o.Complete, o.Partial, o.Lost)
			}
			assertKeptWhole(t, ev)
			assertNormalRate(t, ev)
		})
	}
	assert.Equal(t, keptTraces(topo.Sink), keptTraces(second), "traces at the first and the second backend")
}

// TestShardedBackendReceivesWholeTraces exports kept traces to a backend
// of two shards through load_balancing/backend_static: every kept trace
// arrives whole at exactly one shard, both shards take a share, and the
// shards together hold every error and slow trace complete.
func TestShardedBackendReceivesWholeTraces(t *testing.T) {
	backend := shards{startSink(t), startSink(t)}
	set := withGatewaySet(
		harness.BackendsSet("load_balancing/backend_static"),
		"exporters::load_balancing/backend_static::resolver::static::hostnames=["+backend[0].Endpoint()+", "+backend[1].Endpoint()+"]",
	)
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 2, GatewaySet: set})

	plans := plan(t, 600, 400)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	drained := func() bool { return topo.QueuedItems() == 0 }
	require.True(t, backend[0].WaitQuiet(ctx, decisionWait+time.Second, 3*time.Second, 2*time.Minute, drained) &&
		backend[1].WaitQuiet(ctx, 0, 3*time.Second, 2*time.Minute, drained), "backend shards still receiving")

	ev := harness.Evaluate(plans, sent, backend)
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %4d complete %4d partial %d lost %4d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	assertKeptWhole(t, ev)
	assert.Zero(t, topo.Sink.SpanCount(), "spans at the primary backend, which is not among the sampling pipeline's exporters")

	first, second := keptTraces(backend[0]), keptTraces(backend[1])
	t.Logf("shard 1: %d traces, shard 2: %d traces", len(first), len(second))
	for id := range first {
		assert.False(t, second[id], "trace %s at both shards", id)
	}
	total := float64(len(first) + len(second))
	for i, n := range []int{len(first), len(second)} {
		assert.Greater(t, float64(n), 0.2*total, "shard %d's share of %v traces", i+1, total)
	}
}
