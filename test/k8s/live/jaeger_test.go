package live

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestJaegerJoinsTheHalvesOfSplitTraces: the guard's premise on a real
// backend. The gateways export to a real Jaeger (in-memory storage); under
// traffic through the agents the gateway set scales out 3->4 and back, so
// traces in flight are split and each half is decided on its own gateway.
// Reading every error and slow trace back through Jaeger's query API, each
// must be complete (Jaeger joins the halves both gateways kept by trace
// ID), and some of them must carry the guard's keep attribute (the guard
// did keep halves: the scenario split something).
func TestJaegerJoinsTheHalvesOfSplitTraces(t *testing.T) {
	jaeger, err := harness.StartJaeger(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(jaeger.Stop)
	setBackend := func(endpoint string) {
		setGatewayArgs(t, backendArg(endpoint))
		settleGateways(t, 3, "k8s")
	}
	t.Cleanup(func() { setBackend(env.sink.Endpoint()) })
	setBackend(jaeger.Endpoint())
	time.Sleep(decisionWait)

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 701, 2, 30, 30*45
	gen.ErrorRatio, gen.SlowRatio = 0.2, 0.2
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	scale := func(n int) func() {
		return func() {
			if _, err := env.cp.Kubectl("-n", namespace, "scale", "deployment/tailgate-gateway", fmt.Sprintf("--replicas=%d", n)); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	sent := sendThroughAgents(t, plans, map[time.Duration]func(){10 * time.Second: scale(4), 28 * time.Second: scale(3)})
	settleGateways(t, 3, "k8s")

	var ev harness.Evaluation
	eventually(t, 2*time.Minute, "every error and slow trace complete in Jaeger", func() (bool, string) {
		ev = harness.Evaluate(plans, sent, jaeger)
		b := ev.Breaches()
		return len(b) == 0, strings.Join(b, "; ")
	})
	keptByGuard := 0
	for _, p := range plans {
		if p.Kind != harness.Normal && jaeger.HasTag(p.ID, "tailgate.rebalance.keep") {
			keptByGuard++
		}
	}
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("REPORT Jaeger: %s traces sent %d, complete in Jaeger %d", k, o.Sent, o.Complete)
	}
	t.Logf("REPORT Jaeger: error and slow traces carrying the guard's keep attribute (in flight at a change): %d; duplicate spans %d", keptByGuard, ev.Duplicates)
	require.Positive(t, keptByGuard, "no trace was kept by the guard: the scale-out and scale-in split nothing to join")
}
