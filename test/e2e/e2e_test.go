// Package e2e runs the built tailgate binary as real agent and gateway
// processes, from the shipped profiles with environment overrides only, and
// checks what reaches the backend against the generator's ground truth.
//
// Traffic is a flag: go test ./test/e2e -args -e2e.traces=5000 -e2e.rate=300 -e2e.seed=7
package e2e

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

var (
	flagSeed   = flag.Uint64("e2e.seed", 42, "generator seed")
	flagTraces = flag.Int("e2e.traces", 2000, "traces in the main correctness run")
	flagRate   = flag.Float64("e2e.rate", 150, "new traces per second")
)

const (
	// samplingPercentage is the gateway profile's default probabilistic share.
	samplingPercentage = 10
	// decisionWait is shortened from the profile's 10s to keep the suite
	// quick; traffic below spreads a trace over at most ~3.6s.
	decisionWait = 5 * time.Second
)

// traffic is the generator configuration every test starts from: 3-40 span
// traces from 10 services on 2 nodes, 10% error and 10% slow, each span sent
// when it ends plus up to 1s of SDK batching delay.
func traffic(traces int) harness.GeneratorConfig {
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Traces, gen.Rate = *flagSeed, traces, *flagRate
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	gen.ExportDelay = time.Second
	return gen
}

// gatewayEnv is the profile overrides every e2e gateway runs with.
func gatewayEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"TAILGATE_DECISION_WAIT":              decisionWait.String(),
		"TAILGATE_SPANMETRICS_FLUSH_INTERVAL": "1s",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// startTopology starts a topology whose processes are stopped when the test
// ends, failed or not, and whose logs are printed when it fails.
func startTopology(t *testing.T, cfg harness.TopologyConfig) *harness.Topology {
	t.Helper()
	cfg.LogDir = t.TempDir()
	topo, err := harness.StartTopology(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range topo.Nodes() {
				t.Logf("--- %s log (tail) ---\n%s", n.Name, n.Proc.LogTail(30))
			}
		}
		_ = topo.Stop()
	})
	return topo
}

// send replays plans through the topology's agents within a bounded time.
func send(t *testing.T, topo *harness.Topology, plans []harness.TracePlan) harness.SendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent, err := harness.Send(ctx, plans, topo.AgentEndpoints(), nil)
	require.NoError(t, err)
	return sent
}

// settle waits for decisions (decision_wait after the last span), then until
// every gateway's sending queue is empty and the backend has been quiet for
// quiet, at most maxWait in all.
func settle(t *testing.T, topo *harness.Topology, quiet, maxWait time.Duration) {
	t.Helper()
	drained := func() bool { return topo.QueuedItems() == 0 }
	if !topo.Sink.WaitQuiet(context.Background(), decisionWait+time.Second, quiet, maxWait, drained) {
		t.Logf("settle: gave up after %s (queued items %v)", maxWait, topo.QueuedItems())
	}
}
