package live

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestAbruptGatewayExitOnTheAgents measures what the agents lose when a
// gateway leaves without its drain: the pod deleted with a 1s grace period,
// so preStop is cut to 1s and SIGTERM follows its removal from the
// EndpointSlices at once (a preStop too short, a node shutting down).
// Spans the agents still route to it after it stopped receiving are retried
// until their ring drops it, then dropped (upstream has no failover). With
// the k8s resolver the agents drop it about as fast as it is removed; with
// dns they keep routing to it for up to the interval plus the timeout.
// Asserted: with k8s no interesting trace in flight breaks; with dns at
// most the victim's share of the traces in flight within the dns lag. The
// figures are reported; deploy/kubernetes/README.md ("Exits") quotes them.
func TestAbruptGatewayExitOnTheAgents(t *testing.T) {
	t.Cleanup(func() { useResolver(t, "k8s", 3) })
	for i, resolver := range []string{"k8s", "dns"} {
		t.Run("resolver="+resolver, func(t *testing.T) {
			useResolver(t, resolver, 3)
			time.Sleep(decisionWait)
			gateways := readyPods(t, "tailgate-gateway")
			victim := gateways[0].Name

			gen := harness.DefaultGeneratorConfig()
			gen.Seed, gen.Agents, gen.Rate, gen.Traces = uint64(501+i), 2, 30, 30*40
			gen.ErrorRatio, gen.SlowRatio = 0.2, 0.2
			plans, err := harness.Plan(gen)
			require.NoError(t, err)
			env.sink.Reset()
			const deleteAt = 12 * time.Second
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait := harness.RunAt(ctx, map[time.Duration]func(){deleteAt: func() {
				if _, err := env.cp.Kubectl("-n", namespace, "delete", "pod", victim, "--grace-period=1", "--wait=false"); err != nil {
					t.Errorf("%v", err)
				}
			}})
			sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
			defer scancel()
			sent, err := harness.Send(sctx, plans, agentEndpoints(t), nil)
			require.NoError(t, err)
			wait()
			require.Zero(t, sent.SpansFailed, "agents refused spans")
			settleGateways(t, 3, resolver)
			env.sink.WaitQuiet(context.Background(), decisionWait, 5*time.Second, 2*time.Minute, nil)

			// In flight at the exit: spans sent from a little before the
			// deletion until the agents' lag after it.
			lag := 2 * time.Second
			if resolver == "dns" {
				lag = 5*time.Second + time.Second // the agent profile's dns interval + timeout
			}
			var inFlight []harness.TracePlan
			for _, p := range plans {
				if p.Kind != harness.Normal && p.LastSendAt() >= deleteAt-time.Second && p.FirstSendAt() <= deleteAt+lag {
					inFlight = append(inFlight, p)
				}
			}
			ev := harness.Evaluate(inFlight, sent, env.sink)
			var judged, broken int
			for _, k := range harness.Interesting {
				o := ev.ByKind[k]
				judged, broken = judged+o.Sent, broken+o.Partial+o.Lost
				t.Logf("REPORT resolver=%s abrupt exit: %s traces in flight %d, complete %d, partial %d, lost %d", resolver, k, o.Sent, o.Complete, o.Partial, o.Lost)
			}
			all := harness.Evaluate(plans, sent, env.sink)
			t.Logf("REPORT resolver=%s abrupt exit: error and slow traces broken, all of the run: %d; duplicate spans %d", resolver, len(all.Breaches()), all.Duplicates)
			require.Positive(t, judged, "no interesting trace in flight at the exit")
			if resolver == "k8s" {
				assert.Zero(t, broken, "with the k8s resolver the agents drop the gateway before it stops: nothing in flight may break")
			} else {
				assert.LessOrEqual(t, float64(broken), float64(judged)/3+3, fmt.Sprintf("more broken than the victim's share of the %d in flight", judged))
			}
		})
	}
}
