package live

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// membershipLog records when the gateways' ready endpoint set changes, as
// the EndpointSlices (and so the agents' k8s resolver) publish it, and how
// long every agent (and guard, when on) took to follow a change. The
// agents and guards report only the size of their ring, so only a change
// of size after a quiet spell counts: the tier held the old size when it
// came, and a pod at the new size has switched. That is the scale-out,
// the scale-in and the first step of the rolling restart.
type membershipLog struct {
	mu        sync.Mutex
	changes   []time.Time
	agreement []time.Duration
}

// quietBeforeMeasuring is how long the set must have been steady before a
// change for its agreement time to be measured: longer than any
// resolver's agreement time.
const quietBeforeMeasuring = 15 * time.Second

func watchMembership(t *testing.T, ctx context.Context, resolver string, guard bool) *membershipLog {
	l := &membershipLog{}
	go func() {
		last, size := "", 0
		var changedAt time.Time
		measuring := false
		for ctx.Err() == nil {
			eps := readyEndpointsQuiet()
			sort.Strings(eps)
			if cur := strings.Join(eps, ","); cur != last {
				now := time.Now()
				if last != "" {
					measuring = now.Sub(changedAt) >= quietBeforeMeasuring && len(eps) != size
					changedAt = now
					l.mu.Lock()
					l.changes = append(l.changes, changedAt)
					l.mu.Unlock()
				} else {
					changedAt = now.Add(-quietBeforeMeasuring) // settled before the run
				}
				last, size = cur, len(eps)
			} else if measuring && tierFollows(ctx, resolver, guard, size) {
				measuring = false
				l.mu.Lock()
				l.agreement = append(l.agreement, time.Since(changedAt))
				l.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return l
}

// tierFollows reports whether every running agent's load balancer, and
// with the guard on every running gateway's guard, holds a ring of n
// gateways.
func tierFollows(ctx context.Context, resolver string, guard bool, n int) bool {
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name in (tailgate-agent, tailgate-gateway)"})
	if err != nil {
		return false
	}
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		s, err := harness.ScrapeMetricsAt(net.JoinHostPort(p.Status.PodIP, "8888"))
		if err != nil {
			return false
		}
		seen := s.Sum(harness.MetricGuardRingMembers)
		switch {
		case p.Labels["app.kubernetes.io/name"] == "tailgate-agent":
			seen = s.Sum("otelcol_loadbalancer_num_backends", "resolver", resolver)
		case !guard:
			continue // a guard that is off follows nothing
		}
		if seen != float64(n) {
			return false
		}
	}
	return true
}

// TestRebalanceGuardKeepsSplitTracesWhole runs the same membership churn
// under steady traffic through both agents: scale-out 3->4, scale-in 4->3
// and a rolling restart of every gateway, all through kubectl against the
// real controllers. It runs with the agents and guards on the k8s resolver
// (following the EndpointSlices) and on the dns resolver (the test's
// cluster DNS answering the headless name from the same EndpointSlices),
// each first with the guard off and then on, with the same traces and the
// same events. Asserted: with the guard off, stock behaviour really split
// at least one interesting trace (so the scenario can tell); with the guard
// on, every error and slow trace in flight during a change reaches the
// backend complete, and the guard's cost per change stays within
// costPerChangeBound.
func TestRebalanceGuardKeepsSplitTracesWhole(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s")
	t.Cleanup(func() {
		// Leave the base as applied for the other tests: k8s resolver, guard on.
		for _, w := range []string{"daemonset/tailgate-agent", "deployment/tailgate-gateway"} {
			_, _ = env.cp.Kubectl("-n", namespace, "set", "env", w, "TAILGATE_GATEWAY_RESOLVER=k8s")
		}
		setGatewayArgs(t, guardArgs(true)...)
		_, _ = env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
		settleGateways(t, 3, "k8s")
	})
	for i, resolver := range []string{"k8s", "dns"} {
		if resolver != "k8s" {
			useResolver(t, resolver, 3)
		}
		// Both runs send the same traces; each starts on fresh gateways
		// (setting the variable rolls them), so no decision carries over.
		seed := uint64(101 + i)
		var stock *churnResult
		for _, guard := range []bool{false, true} {
			t.Run(fmt.Sprintf("resolver=%s/guard=%v", resolver, guard), func(t *testing.T) {
				setGatewayArgs(t, guardArgs(guard)...)
				settleGateways(t, 3, resolver)
				time.Sleep(decisionWait)
				r := runChurn(t, resolver, guard, seed)
				if !guard {
					stock = &r
					assert.Positive(t, r.partial, "stock behaviour split no interesting trace: this scenario cannot show what the guard does")
					return
				}
				require.NotNil(t, stock, "no guard-off run to compare with")
				// The guard's cost: spans at the backend beyond stock's, in
				// seconds of the whole traffic, per membership change.
				cost := float64(r.backendSpans-stock.backendSpans) / r.spansPerSecond / float64(r.changes)
				bound := costPerChangeBound(resolver)
				t.Logf("REPORT resolver=%s: guard cost %.1f s of full traffic per change (%d spans at the backend vs %d stock, %d changes, %.0f spans/s); bound %.1f s",
					resolver, cost, r.backendSpans, stock.backendSpans, r.changes, r.spansPerSecond, bound)
				assert.LessOrEqual(t, cost, bound, "the guard keeps more than the traces a change can split")
				recordChurn(t, harness.ChurnRecord{
					Resolver: resolver, Changes: r.changes, SpansPerSecond: r.spansPerSecond,
					CostSeconds: cost, BoundSeconds: bound,
					BackendSpansOn: r.backendSpans, BackendSpansOff: stock.backendSpans,
					KeptShareOn: r.keptShare, KeptShareOff: stock.keptShare,
					InFlight: r.judged, CompleteOn: r.complete, CompleteOff: stock.complete, PartialOff: stock.partial,
					AgreementSeconds: max(r.agreement, stock.agreement).Seconds(),
				})
			})
		}
	}
}

// costPerChangeBound is the most a membership change may cost with the
// guard on, in seconds of full traffic. A change moves 1/4 of the trace IDs
// here (3 <-> 4 gateways, every step of the rolling update too), and can
// only split traces in flight at it: undecided on the old owner (first seen
// within decision_wait, plus tail_sampling's 1s tick) or begun before the
// agents switched (the resolver's lag plus the guard's clock_skew), each
// with its spread (the generator's traces last up to 3.6s, plus 1s of
// export delay). The guard keeps those traces whole; everything else it
// leaves to the policies. Stock keeps some of them anyway, so this bound is
// above the expected cost.
func costPerChangeBound(resolver string) float64 {
	lag := 2 * time.Second // the guard's k8s default
	if resolver == "dns" {
		// The guard's dns default: 5s of cluster DNS caching + the
		// profile's 1s interval + 1s timeout.
		lag = 5*time.Second + time.Second + time.Second
	}
	const clockSkew, spread, tick = 2 * time.Second, 4600 * time.Millisecond, time.Second
	inFlight := decisionWait + tick + spread + lag + clockSkew
	return inFlight.Seconds() / 4
}

// churnResult is what one churn run measured.
type churnResult struct {
	changes          int           // membership changes seen during the run
	judged, complete int           // interesting traces in flight during a change, and those complete
	partial          int           // of those, arrived partial
	backendSpans     int           // distinct planned spans at the backend
	keptShare        float64       // share of the spans sent that carry the guard's keep attribute
	spansPerSecond   float64       // offered load
	agreement        time.Duration // slowest time for the tier to follow a change
}

// recordChurn appends rec to $TAILGATE_CHURN_REPORT, when set.
func recordChurn(t *testing.T, rec harness.ChurnRecord) {
	if path := os.Getenv("TAILGATE_CHURN_REPORT"); path != "" {
		require.NoError(t, harness.AppendChurnRecord(path, rec))
	}
}

func runChurn(t *testing.T, resolver string, guard bool, seed uint64) churnResult {
	agents := agentEndpoints(t)
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = seed, 2, 30, 30*75
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)

	env.sink.Reset() // the other run sent the same traces
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := watchMembership(t, ctx, resolver, guard)
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
	// Until the first change the gateway set is steady: every span the
	// agents' load_balancing ring sends to a gateway is one that gateway's
	// guard, following the same resolver, computes as its own. Any span
	// counted as not owned is a disagreement between the replica and the
	// exporter (real resolvers, real ring, real traffic).
	notOwnedAtStart, err := gatewaySpansNotOwned(ctx)
	require.NoError(t, err)
	notOwnedSteady, steadyErr := -1.0, error(nil)
	events[7*time.Second] = func() {
		var now float64
		now, steadyErr = gatewaySpansNotOwned(ctx)
		notOwnedSteady = now - notOwnedAtStart
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
	agreement := slices.Max(append([]time.Duration{0}, changes.agreement...))
	t.Logf("REPORT resolver=%s guard=%v: every agent and guard followed a change within %.1f s (slowest of %d changes measured: %v)",
		resolver, guard, agreement.Seconds(), len(changes.agreement), changes.agreement)
	changes.mu.Unlock()
	require.NotEmpty(t, times, "the gateway set never changed")

	// In flight during a change: the change fell between the trace's first
	// and last span (give or take a second of agent batching).
	var inFlight, normalInFlight []harness.TracePlan
	for _, p := range plans {
		first, last := start.Add(p.Start-time.Second), start.Add(p.LastSendAt()+time.Second)
		if !slices.ContainsFunc(times, func(c time.Time) bool { return !c.Before(first) && !c.After(last) }) {
			continue
		}
		if p.Kind == harness.Normal {
			normalInFlight = append(normalInFlight, p)
		} else {
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
	var keptSpans, foreign, backendSpans int
	for _, p := range plans {
		planned := map[[8]byte]bool{}
		arrived := env.sink.SpansOf(p.ID)
		for _, s := range p.Spans {
			planned[s.SpanID] = true
			if keptByGuard(s.SpanID) {
				keptSpans++
			}
			if arrived[s.SpanID] > 0 {
				backendSpans++
			}
		}
		for id := range arrived {
			if !planned[id] {
				foreign++ // e.g. a marker span that escaped filter/rebalance_markers
			}
		}
	}
	assert.Zero(t, foreign, "spans at the backend that no application sent (markers must be dropped after sampling)")
	t.Logf("REPORT resolver=%s guard=%v: %d membership changes; error+slow traces in flight during a change: %d, complete %d, partial %d, lost %d; spans with the guard's keep attribute: %d of %d sent (%.1f%%); at the backend: %d",
		resolver, guard, len(times), judged, complete, partial, lost, keptSpans, sent.SpansSent, 100*float64(keptSpans)/float64(sent.SpansSent), backendSpans)
	require.GreaterOrEqual(t, judged, 20, "too few interesting traces in flight during the changes to judge")
	if guard {
		assert.Empty(t, ev.Breaches(), "with the guard on, every interesting trace in flight during a change arrives complete")
		// A normal trace is kept whole (both halves marked, or both kept
		// by the probabilistic policy's trace ID hash) or not at all: in
		// part, one gateway missed a change it should have marked.
		normal := harness.Evaluate(normalInFlight, sent, env.sink).ByKind[harness.Normal]
		t.Logf("REPORT resolver=%s: normal traces in flight during a change: %d, complete %d, partial %d, lost %d", resolver, normal.Sent, normal.Complete, normal.Partial, normal.Lost)
		for _, id := range normal.PartialIDs {
			i := slices.IndexFunc(normalInFlight, func(p harness.TracePlan) bool { return p.ID == id })
			t.Log(describeSplit(normalInFlight[i], env.sink.SpansOf(id), start, times))
		}
		if len(normal.PartialIDs)+len(ev.Breaches()) > 0 {
			t.Log(guardTimeline(start))
		}
		assert.Zero(t, normal.Partial, "with the guard on, no trace in flight during a change arrives in part")
		require.NoError(t, steadyErr)
		t.Logf("REPORT resolver=%s: spans the guards counted as not owned while the set was steady (first 7s): %.0f", resolver, notOwnedSteady)
		assert.Zero(t, notOwnedSteady, "the guards' ring disagrees with the agents' while nothing changes")
	}
	return churnResult{
		changes: len(times), judged: judged, complete: complete, partial: partial, backendSpans: backendSpans,
		keptShare:      float64(keptSpans) / float64(sent.SpansSent),
		agreement:      agreement,
		spansPerSecond: float64(sent.SpansSent) / sent.Elapsed.Seconds(),
	}
}

// gatewaySpansNotOwned sums rebalance_guard's spans_not_owned over the
// ready gateway pods. Safe in a background goroutine (no t).
func gatewaySpansNotOwned(ctx context.Context) (float64, error) {
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tailgate-gateway"})
	if err != nil {
		return 0, err
	}
	var total float64
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		s, err := harness.ScrapeMetricsAt(net.JoinHostPort(p.Status.PodIP, "8888"))
		if err != nil {
			return 0, fmt.Errorf("telemetry of %s: %w", p.Name, err)
		}
		total += s.Sum(harness.MetricGuardSpansNotOwned)
	}
	return total, nil
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

// guardTimeline is, from every gateway pod's log (the pods that ended
// too), each ring its guard adopted, as an offset from start: what it
// takes to tell which guard learned a change late.
func guardTimeline(start time.Time) string {
	files, _ := filepath.Glob(filepath.Join(env.dir, "logs", "*tailgate-gateway*"))
	var sb strings.Builder
	fmt.Fprintf(&sb, "guards' ring changes (run started %s):\n", start.UTC().Format(time.RFC3339Nano))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(line, "rebalance_guard: ") || !strings.Contains(line, "gateway set") {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0])
			if err != nil || at.Before(start.Add(-time.Minute)) {
				continue
			}
			fields := line[strings.LastIndex(line, "\"members\""):]
			fmt.Fprintf(&sb, "  %+.2fs %s %s\n", at.Sub(start).Seconds(), filepath.Base(f), fields)
		}
	}
	return sb.String()
}
