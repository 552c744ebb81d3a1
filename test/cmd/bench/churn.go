package main

// The rebalance_guard's cost per membership change, measured by the churn
// suite (test/k8s/live, TestRebalanceGuardKeepsSplitTracesWhole) on a real
// control plane: `make bench-churn` runs it with TAILGATE_CHURN_REPORT set
// and then this command with -churn-report, which writes the section below
// into docs/benchmarks.md. The load benchmark keeps the section as it is.

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
)

const (
	churnBegin = "<!-- churn: written by `make bench-churn`; `make bench` keeps it -->"
	churnEnd   = "<!-- churn end -->"
)

func minMax(recs []harness.ChurnRecord, f func(harness.ChurnRecord) float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, r := range recs {
		lo, hi = math.Min(lo, f(r)), math.Max(hi, f(r))
	}
	return lo, hi
}

func span(lo, hi float64, format string) string {
	if fmt.Sprintf(format, lo) == fmt.Sprintf(format, hi) {
		return fmt.Sprintf(format, lo)
	}
	return fmt.Sprintf(format+"-"+format, lo, hi)
}

func renderChurn(recs []harness.ChurnRecord) string {
	byResolver := map[string][]harness.ChurnRecord{}
	for _, r := range recs {
		byResolver[r.Resolver] = append(byResolver[r.Resolver], r)
	}
	resolvers := make([]string, 0, len(byResolver))
	for r := range byResolver {
		resolvers = append(resolvers, r)
	}
	sort.Strings(resolvers)
	var b strings.Builder
	fmt.Fprintln(&b, churnBegin)
	fmt.Fprintf(&b, "## rebalance_guard: cost per membership change (churn suite, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(&b, "The guard's cost per change is the spans at the backend with the guard on minus those with it off (same traces, same events, same cluster, one run after the other), in seconds of the whole traffic, divided by the membership changes the run saw (EndpointSlice changes, polled every 100 ms: a pod added and another removed within one poll count once). The in-flight traces are judged per run (those whose spans straddle a change of that run). The churn suite asserts it stays within the bound, and that the guard-off run split at least one interesting trace.")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| Resolver | Runs | Changes per run | Cost per change (guard on - off) | Bound | Spans with the keep attribute, guard on | Error and slow traces in flight at a change, complete (guard on) | Same traces split by stock (guard off) | Every agent and guard follows a change within (slowest) |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|")
	for _, name := range resolvers {
		rs := byResolver[name]
		chLo, chHi := minMax(rs, func(r harness.ChurnRecord) float64 { return float64(r.Changes) })
		cLo, cHi := minMax(rs, func(r harness.ChurnRecord) float64 { return r.CostSeconds })
		kLo, kHi := minMax(rs, func(r harness.ChurnRecord) float64 { return 100 * r.KeptShareOn })
		var inflight, on, partial int
		for _, r := range rs {
			inflight, on, partial = inflight+r.InFlight, on+r.CompleteOn, partial+r.PartialOff
		}
		_, agreeHi := minMax(rs, func(r harness.ChurnRecord) float64 { return r.AgreementSeconds })
		fmt.Fprintf(&b, "| %s | %d | %s | %s s | %.1f s | %s%% | %d of %d | %d partial | %.1f s |\n", name, len(rs),
			span(chLo, chHi, "%.0f"), span(cLo, cHi, "%.1f"), rs[0].BoundSeconds, span(kLo, kHi, "%.1f"),
			on, inflight, partial, agreeHi)
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "Scenario: 2 agents, 3 gateways (real pods of deploy/kubernetes/base on a real control plane), 30 traces/s of 3-40 spans for 75 s, 10% error and 10% slow; a scale-out 3->4, a scale-in 4->3 and a rolling restart (each gateway replaced: 2 changes per gateway). The bound is (decision_wait + tail_sampling's 1 s tick + the traces' spread + the resolver's lag + clock_skew) x the moved share (1/4), from test/k8s/live costPerChangeBound. Pods resolve names through a DNS cache on their node (5 s TTL, as NodeLocal DNSCache and CoreDNS keep a headless Service's records); the time to follow a change runs from the EndpointSlice change to every running agent's load balancer and every gateway's guard holding a ring of the new size, for each change the next did not overtake.")
	fmt.Fprintln(&b, churnEnd)
	return b.String()
}

// spliceChurn replaces the churn section of report with section (appends
// it when report has none).
func spliceChurn(report, section string) string {
	return docs.Splice(report, section, churnBegin, churnEnd)
}

// existingChurn is the churn section of the file at path, if any.
func existingChurn(path string) string { return existingSectionOf(path, churnBegin, churnEnd) }

// existingSectionOf is the section between begin and end of the file at
// path, "" when there is none (or no file).
func existingSectionOf(path, begin, end string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return docs.Marked(string(data), begin, end)
}

func writeChurnSection(reportPath, out string) error {
	recs, err := harness.ReadChurnRecords(reportPath)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	updated := spliceChurn(string(data), renderChurn(recs))
	fmt.Print(renderChurn(recs))
	return os.WriteFile(out, []byte(updated), 0o644)
}
