package live

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// usersPolicies is a user's policies file as they would write it: no
// policy for the guard (the binary adds it), and one new rule, every trace
// through the fraud service.
const usersPolicies = `# Ours: errors, slow, every trace through fraud, 10% of the rest.
- name: errors
  type: status_code
  status_code: {status_codes: [ERROR]}
- name: slow
  type: latency
  latency: {threshold_ms: 1000}
- name: fraud-all
  type: string_attribute
  string_attribute: {key: service.name, values: [fraud]}
- name: share
  type: probabilistic
  probabilistic: {sampling_percentage: 10}
`

// TestChangingPoliciesRollsTheGateways: under traffic through the agents,
// the user replaces the tailgate-gateway-overlay ConfigMap through their overlay
// (a file that names no guard policy, keeping every trace through the fraud
// service). The Deployment rolls the gateways one by one, every step a
// membership change the guard handles: every error and slow trace sent
// through the rollout arrives whole, halves kept by the guard name its
// policy (recordpolicy). After the rollout, traces follow the new file:
// every normal trace through fraud is kept, 10% of the others.
func TestChangingPoliciesRollsTheGateways(t *testing.T) {
	settleGateways(t, 3, "k8s")
	t.Cleanup(func() {
		require.NoError(t, applyBase())
		settleGateways(t, 3, "k8s")
	})
	time.Sleep(decisionWait) // earlier tests' traces decided

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 901, 2, 30, 30*75
	gen.ErrorRatio, gen.SlowRatio = 0.15, 0.15
	during, err := harness.Plan(gen)
	require.NoError(t, err)

	sent, r := rollGatewaysUnderTraffic(t, during, gen.Rate, func() error { return applyOverlay(nil, []byte(usersPolicies)) })
	r.report(t, "policies rollout")
	require.NotZero(t, r.rolledOut, "the rollout did not complete")
	requireWhole(t, "policies rollout", during, sent)

	t.Run("halves kept by the guard name its policy", func(t *testing.T) {
		policies := map[string]int{}
		for _, p := range during {
			for _, s := range p.Spans {
				if v, ok := env.sink.SpanAttr(s.SpanID, "tailgate.rebalance.keep"); ok && v == "true" {
					policy, _ := env.sink.ScopeAttr(s.SpanID, "tailsampling.policy")
					policies[policy]++
				}
			}
		}
		t.Logf("REPORT policies rollout: spans carrying the guard's keep attribute, by the policy named on them: %v", policies)
		assert.Positive(t, policies["rebalance_guard"], "the rollout split traces the guard kept, under its own policy")
	})

	t.Run("after the rollout, traces follow the new policies", func(t *testing.T) {
		// Short traces: about half of them pass through fraud, so both
		// halves of the comparison are large.
		gen.Seed, gen.Rate, gen.Traces, gen.MinSpans, gen.MaxSpans = 902, 60, 900, 3, 6
		after, err := harness.Plan(gen)
		require.NoError(t, err)
		sent := sendThroughAgents(t, after, nil)
		eventually(t, decisionWait+time.Minute, "every error and slow trace complete", func() (bool, string) {
			b := harness.Evaluate(after, sent, env.sink).Breaches()
			return len(b) == 0, strings.Join(b, "; ")
		})
		var fraud, others []harness.TracePlan
		for _, p := range after {
			if p.Kind != harness.Normal {
				continue
			}
			if slices.ContainsFunc(p.Spans, func(s harness.SpanPlan) bool { return s.Service == "fraud" }) {
				fraud = append(fraud, p)
			} else {
				others = append(others, p)
			}
		}
		f := harness.Evaluate(fraud, sent, env.sink).ByKind[harness.Normal]
		o := harness.Evaluate(others, sent, env.sink).ByKind[harness.Normal]
		t.Logf("REPORT policies rollout: after it, normal traces through fraud kept %d of %d, others %d of %d", f.Complete, f.Sent, o.Complete, o.Sent)
		require.Positive(t, f.Sent)
		assert.Equal(t, f.Sent, f.Complete, "normal traces through fraud, all kept now")
		n, p := float64(o.Sent), 0.1
		assert.InDelta(t, n*p, float64(o.Complete), 4*math.Sqrt(n*p*(1-p)), "the other normal traces at 10%%")
	})
}

// podEvent is a change in the gateway pods seen by watchGatewayPods.
type podEvent struct {
	at   time.Time
	what string
}

// gatewayPodTimeline records when each gateway pod became ready, stopped
// being ready, and went away.
type gatewayPodTimeline struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	events []podEvent
}

func watchGatewayPods(t *testing.T) *gatewayPodTimeline {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	tl := &gatewayPodTimeline{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { tl.stop() })
	go func() {
		defer close(tl.done)
		ready := map[string]bool{}
		for c.Err() == nil {
			seen := map[string]bool{}
			if list, err := gatewayPodList(c); err == nil {
				for _, p := range list {
					seen[p.Name] = true
					r := podReady(p)
					if was, known := ready[p.Name]; !known || was != r {
						tl.add(fmt.Sprintf("%s ready=%t", p.Name, r))
					}
					ready[p.Name] = r
				}
				for name := range ready {
					if !seen[name] {
						tl.add(name + " gone")
						delete(ready, name)
					}
				}
			}
			select {
			case <-c.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return tl
}

func (tl *gatewayPodTimeline) add(what string) {
	tl.mu.Lock()
	tl.events = append(tl.events, podEvent{time.Now(), what})
	tl.mu.Unlock()
}

func (tl *gatewayPodTimeline) stop() []podEvent {
	tl.cancel()
	<-tl.done
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.events)
}

func gatewayPodList(c context.Context) ([]corev1.Pod, error) {
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(c, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tailgate-gateway"})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}
