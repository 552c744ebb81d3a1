package live

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// membershipLog records when the gateways' ready endpoint set changes, as
// the EndpointSlices (and so the agents' k8s resolver) publish it.
type membershipLog struct {
	mu      sync.Mutex
	changes []time.Time
}

func watchMembership(t *testing.T, ctx context.Context) *membershipLog {
	l := &membershipLog{}
	go func() {
		last := ""
		for ctx.Err() == nil {
			eps := readyEndpointsQuiet()
			sort.Strings(eps)
			if cur := strings.Join(eps, ","); cur != last {
				if last != "" {
					l.mu.Lock()
					l.changes = append(l.changes, time.Now())
					l.mu.Unlock()
				}
				last = cur
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return l
}

// TestRebalanceGuardKeepsSplitTracesWhole runs the same membership churn
// under steady traffic through both agents: scale-out 3->4, scale-in 4->3
// and a rolling restart of every gateway, all through kubectl against the
// real controllers. It runs with the agents and guards on the k8s resolver
// (following the EndpointSlices) and on the dns resolver (the test's
// cluster DNS answering the headless name from the same EndpointSlices),
// each first with the guard off (stock behaviour, reported) and then on
// (asserted): every error and slow trace in flight during a change must
// reach the backend complete.
func TestRebalanceGuardKeepsSplitTracesWhole(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s")
	t.Cleanup(func() {
		// Leave the base as applied for the other tests: k8s resolver, guard on.
		for _, w := range []string{"daemonset/tailgate-agent", "deployment/tailgate-gateway"} {
			_, _ = env.cp.Kubectl("-n", namespace, "set", "env", w, "TAILGATE_GATEWAY_RESOLVER=k8s", "TAILGATE_REBALANCE_GUARD-")
		}
		_, _ = env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
		settleGateways(t, 3, "k8s")
	})
	seed := uint64(100)
	for _, resolver := range []string{"k8s", "dns"} {
		if resolver != "k8s" {
			for _, w := range []string{"daemonset/tailgate-agent", "deployment/tailgate-gateway"} {
				_, err := env.cp.Kubectl("-n", namespace, "set", "env", w, "TAILGATE_GATEWAY_RESOLVER="+resolver)
				require.NoError(t, err)
			}
			_, err := env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
			require.NoError(t, err)
		}
		for _, guard := range []bool{false, true} {
			seed++
			t.Run(fmt.Sprintf("resolver=%s/guard=%v", resolver, guard), func(t *testing.T) {
				_, err := env.cp.Kubectl("-n", namespace, "set", "env", "deployment/tailgate-gateway", fmt.Sprintf("TAILGATE_REBALANCE_GUARD=%v", guard))
				require.NoError(t, err)
				settleGateways(t, 3, resolver)
				time.Sleep(decisionWait)
				runChurn(t, resolver, guard, seed)
			})
		}
	}
}

func runChurn(t *testing.T, resolver string, guard bool, seed uint64) {
	agents := agentEndpoints(t)
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = seed, 2, 30, 30*75
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := watchMembership(t, ctx)
	kubectl := func(args ...string) func() {
		return func() {
			if _, err := env.cp.Kubectl(append([]string{"-n", namespace}, args...)...); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	events := map[time.Duration]func(){
		8 * time.Second:  kubectl("scale", "deployment/tailgate-gateway", "--replicas=4"),
		25 * time.Second: kubectl("scale", "deployment/tailgate-gateway", "--replicas=3"),
		45 * time.Second: kubectl("rollout", "restart", "deployment/tailgate-gateway"),
	}
	wait := harness.RunAt(ctx, events)
	start := time.Now()
	sctx, scancel := context.WithTimeout(ctx, 5*time.Minute)
	defer scancel()
	sent, err := harness.Send(sctx, plans, agents, nil)
	require.NoError(t, err)
	wait()
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	settleGateways(t, 3, resolver)
	env.sink.WaitQuiet(context.Background(), 0, 5*time.Second, 2*time.Minute, nil)
	cancel()

	changes.mu.Lock()
	times := append([]time.Time(nil), changes.changes...)
	changes.mu.Unlock()
	require.NotEmpty(t, times, "the gateway set never changed")

	// In flight during a change: the change fell between the trace's first
	// and last span (give or take a second of agent batching).
	var inFlight []harness.TracePlan
	for _, p := range plans {
		if p.Kind == harness.Normal {
			continue
		}
		first, last := start.Add(p.Start-time.Second), start.Add(p.LastSendAt()+time.Second)
		if slices.ContainsFunc(times, func(c time.Time) bool { return !c.Before(first) && !c.After(last) }) {
			inFlight = append(inFlight, p)
		}
	}
	ev := harness.Evaluate(inFlight, sent, env.sink)
	var judged, complete, partial, lost int
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		judged, complete, partial, lost = judged+o.Sent, complete+o.Complete, partial+o.Partial, lost+o.Lost
		if guard { // stock partials are expected: only the guard's misses need telling apart
			for _, id := range o.PartialIDs {
				i := slices.IndexFunc(inFlight, func(p harness.TracePlan) bool { return p.ID == id })
				t.Log(describeSplit(inFlight[i], env.sink.SpansOf(id), start, times))
			}
		}
	}
	var keptSpans, foreign int
	for _, p := range plans {
		planned := map[[8]byte]bool{}
		for _, s := range p.Spans {
			planned[s.SpanID] = true
			if keptByGuard(s.SpanID) {
				keptSpans++
			}
		}
		for id := range env.sink.SpansOf(p.ID) {
			if !planned[id] {
				foreign++ // e.g. a marker span that escaped filter/rebalance_markers
			}
		}
	}
	assert.Zero(t, foreign, "spans at the backend that no application sent (markers must be dropped after sampling)")
	t.Logf("REPORT resolver=%s guard=%v: %d membership changes; error+slow traces in flight during a change: %d, complete %d, partial %d, lost %d; spans kept by the guard's attribute: %d of %d sent",
		resolver, guard, len(times), judged, complete, partial, lost, keptSpans, sent.SpansSent)
	require.GreaterOrEqual(t, judged, 20, "too few interesting traces in flight during the changes to judge")
	if guard {
		assert.Empty(t, ev.Breaches(), "with the guard on, every interesting trace in flight during a change arrives complete")
	}
}

// describeSplit says, for a trace that reached the backend partial, which
// spans arrived (and whether they carry the guard's keep attribute) and
// which did not, against the membership changes, all as offsets from the
// start of the run: what it takes to tell which rule missed.
func describeSplit(p harness.TracePlan, arrived map[pcommon.SpanID]int, start time.Time, changes []time.Time) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "partial trace %s (%v): %d of %d spans; changes at", p.ID, p.Kind, len(arrived), len(p.Spans))
	for _, c := range changes {
		fmt.Fprintf(&sb, " +%.1fs", c.Sub(start).Seconds())
	}
	for _, sp := range p.Spans {
		state := "MISSING"
		if _, ok := arrived[sp.SpanID]; ok {
			state = "arrived"
			if keptByGuard(sp.SpanID) {
				state = "arrived, kept by the guard"
			}
		}
		fmt.Fprintf(&sb, "\n  span %s agent %d sent at +%.2fs error=%v: %s", sp.SpanID, sp.Agent, (p.Start + sp.SendAt).Seconds(), sp.Error, state)
	}
	return sb.String()
}

// keptByGuard reports whether the span reached the backend with the
// guard's keep attribute.
func keptByGuard(id pcommon.SpanID) bool {
	v, ok := env.sink.SpanAttr(id, "tailgate.rebalance.keep")
	return ok && v == "true"
}
