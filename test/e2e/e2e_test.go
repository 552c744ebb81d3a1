// Package e2e runs the built tailgate binary as real agent and gateway
// processes, from the shipped profiles, and checks what reaches the backend
// against the generator's ground truth.
package e2e

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// samplingPercentage is the gateway profile's default probabilistic share.
const samplingPercentage = 10

// startTopology starts a topology whose processes are stopped when the test
// ends, failed or not, and whose logs are printed when it fails.
func startTopology(t *testing.T, cfg harness.TopologyConfig) *harness.Topology {
	t.Helper()
	cfg.LogDir = t.TempDir()
	topo, err := harness.StartTopology(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range append(append([]*harness.Node{}, topo.Agents...), topo.Gateways...) {
				t.Logf("--- %s log (tail) ---\n%s", n.Name, n.Proc.LogTail(30))
			}
		}
		_ = topo.Stop()
	})
	return topo
}

// waitForBackend waits for decisions (decision_wait after the last span)
// and then until the sink has been quiet for quiet, at most maxWait.
func waitForBackend(t *testing.T, sink *harness.Sink, decisionWait, quiet, maxWait time.Duration) {
	t.Helper()
	time.Sleep(decisionWait)
	last, lastChange, start := sink.SpanCount(), time.Now(), time.Now()
	for time.Since(start) < maxWait && time.Since(lastChange) < quiet {
		time.Sleep(200 * time.Millisecond)
		if n := sink.SpanCount(); n != last {
			last, lastChange = n, time.Now()
		}
	}
}

// TestSmokeEndToEnd drives a short burst of traces through 2 agents and 3
// gateways and checks the promise of the product: every error and slow
// trace arrives whole, no trace arrives in part, and normal traces are kept
// at the probabilistic rate.
func TestSmokeEndToEnd(t *testing.T) {
	const decisionWait = 4 * time.Second
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 3,
		GatewayEnv: map[string]string{"TAILGATE_DECISION_WAIT": decisionWait.String()},
	})

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Traces, gen.Rate = 42, 600, 150
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	// Spread spans of one trace over up to ~0.5s of SDK batching delay so that
	// the last span of a slow trace lands well within decision_wait.
	gen.ExportDelay = 500 * time.Millisecond
	plans, err := harness.Plan(gen)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent, err := harness.Send(ctx, plans, topo.AgentEndpoints(), nil)
	require.NoError(t, err)
	require.Zero(t, sent.SpansFailed, "agents refused spans")

	waitForBackend(t, topo.Sink, decisionWait+time.Second, 2*time.Second, time.Minute)
	counters := topo.Counters()
	ev := harness.Evaluate(plans, sent, topo.Sink)

	for _, k := range []harness.Kind{harness.Error, harness.Slow} {
		o := ev.ByKind[k]
		require.Positive(t, o.Sent, "the run generated no %s traces", k)
		assert.Equal(t, o.Sent, o.Complete, "%s traces: every one must arrive complete (partial %d, lost %d)", k, o.Partial, o.Lost)
	}
	for _, k := range harness.Kinds {
		assert.Zero(t, ev.ByKind[k].Partial, "%s traces arrived partially: %v", k, ev.ByKind[k].PartialIDs)
	}
	assert.Zero(t, ev.Unknown, "the backend received spans of traces nobody sent")

	// Normal traces: kept with probability p; allow 4 standard deviations.
	normal := ev.ByKind[harness.Normal]
	p := samplingPercentage / 100.0
	n := float64(normal.Sent)
	sigma := math.Sqrt(n * p * (1 - p))
	assert.InDelta(t, n*p, float64(normal.Complete), 4*sigma, "normal traces kept: %d of %d", normal.Complete, normal.Sent)

	// Every gateway took part: the agents spread traces by trace ID.
	require.Len(t, counters.GatewayNewTraces, 3)
	for i, v := range counters.GatewayNewTraces {
		assert.Positive(t, v, "gateway-%d received no traces", i+1)
	}
	assert.Zero(t, counters.ExporterFailed, "export failures")
	assert.Zero(t, counters.DroppedTooEarly, "traces evicted before their decision")
}
