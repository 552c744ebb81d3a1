// Package e2e runs the built tailgate binary as real agent and gateway
// processes, from the shipped profiles with collector --set flags and
// overlays as a user would give them, and
// checks what reaches the backend against the generator's ground truth.
//
// Traffic is a flag: go test ./test/e2e -args -e2e.traces=5000 -e2e.rate=300 -e2e.seed=7
package e2e

import (
	"context"
	"flag"
	"maps"
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

var (
	flagSeed   = flag.Uint64("e2e.seed", 42, "generator seed")
	flagTraces = flag.Int("e2e.traces", 2000, "traces in the main correctness run")
	flagRate   = flag.Float64("e2e.rate", 150, "new traces per second")
	// Shows what the exit tests guard against: -e2e.backend-queue=disk.
	flagBackendQueue = flag.String("e2e.backend-queue", "", "the exit tests' backend queue, memory or disk (default: the profile's)")
)

func TestMain(m *testing.M) {
	// Runs the ground truth against a lever of the gateway profile, e.g.
	// -e2e.gateway-set=processors::tail_sampling::sampling_strategy=span-ingest.
	flag.Func("e2e.gateway-set", "one more collector --set flag of every e2e gateway (repeatable)", func(s string) error {
		gatewaySet = append(gatewaySet, s)
		return nil
	})
	flag.Parse()
	os.Exit(m.Run())
}

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

// plan is the ground truth of traffic(traces), its seed moved by
// seedOffset so that each test sends traces of its own.
func plan(t *testing.T, traces int, seedOffset uint64) []harness.TracePlan {
	t.Helper()
	gen := traffic(traces)
	gen.Seed += seedOffset
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	return plans
}

// gatewaySet is the collector --set flags every e2e gateway runs with.
var gatewaySet = []string{
	"processors::tail_sampling::decision_wait=" + decisionWait.String(),
	"connectors::span_metrics::metrics_flush_interval=1s",
}

// withGatewaySet is gatewaySet and then more (which win).
func withGatewaySet(more ...string) []string {
	return append(slices.Clone(gatewaySet), more...)
}

// assertKeptWhole checks the product's promise on an evaluation: there were
// error and slow traces to judge, and every one arrived complete, and no
// trace of any kind arrived in part.
func assertKeptWhole(t *testing.T, ev harness.Evaluation) {
	t.Helper()
	for _, k := range harness.Interesting {
		require.Positive(t, ev.ByKind[k].Sent, "the run generated no %s traces", k)
	}
	assert.Empty(t, ev.Breaches(), "interesting traces not kept whole")
}

// assertNormalRate checks that normal traces were kept at the profile's
// probabilistic share, within 4 standard deviations of the binomial.
func assertNormalRate(t *testing.T, ev harness.Evaluation) {
	t.Helper()
	o := ev.ByKind[harness.Normal]
	p, n := samplingPercentage/100.0, float64(o.Sent)
	sigma := math.Sqrt(n * p * (1 - p))
	assert.InDelta(t, n*p, float64(o.Complete), 4*sigma, "kept %d of %d normal traces (expected %.0f +- %.0f)", o.Complete, o.Sent, n*p, 4*sigma)
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

// startLoneNode starts one collector from a shipped profile on fresh
// ports, outside a Topology, with the environment and --set flags
// settings gives on top of the ports'; it is stopped when the test ends.
// host is its pod IP ("" for 127.0.0.1).
func startLoneNode(t *testing.T, profile, host string, settings func(harness.NodePorts) (map[string]string, []string)) (*harness.Process, harness.NodePorts) {
	t.Helper()
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	ports, err := harness.PickPorts()
	require.NoError(t, err)
	ports.Host = host
	vars := ports.Env(profile)
	env, set := settings(ports)
	maps.Copy(vars, env)
	if profile == "gateway" {
		set = append(harness.StorageSet(t.TempDir()), set...)
	}
	p, err := harness.StartProcess(bin, harness.ProcessSpec{
		Name: profile, Args: ports.Args(profile, harness.ProfilePath(profile), nil, set...), Env: vars,
		HealthHost: host, HealthPort: ports.Health, LogDir: t.TempDir(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(30 * time.Second) })
	require.NoError(t, p.WaitHealthy(30*time.Second))
	return p, ports
}

// agentOutsideKubernetes is the --set flag an agent needs here (no
// Kubernetes API: harness.AgentPassthrough), none for a gateway.
func agentOutsideKubernetes(profile string) []string {
	if profile == "agent" {
		return []string{harness.AgentPassthrough}
	}
	return nil
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
	settleAt(t, topo, topo.Sink, quiet, maxWait)
}

// settleAt is settle for a backend of the test's own in place of the
// topology's sink.
func settleAt(t *testing.T, topo *harness.Topology, backend *harness.Sink, quiet, maxWait time.Duration) {
	t.Helper()
	drained := func() bool { return topo.QueuedItems() == 0 }
	if !backend.WaitQuiet(context.Background(), decisionWait+time.Second, quiet, maxWait, drained) {
		t.Logf("settle: gave up after %s (queued items %v)", maxWait, topo.QueuedItems())
	}
}

// eventually polls cond every 500ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if ok, last := harness.Poll(timeout, 500*time.Millisecond, cond); !ok {
		t.Fatalf("%s: not after %s (last state: %s)", what, timeout, last)
	}
}
