package main

// The walk from 5M spans/s to a tier: every number computed from what the
// repository measures or simulates (the constants above, the ring skew,
// the profile's defaults, docs/benchmarks.md's agent CPU, churn cost and
// membership-change benchmark), never typed in. `make sizing` writes it
// after the constants; `make sizing-walk` rewrites it alone from the
// committed figures, and a test keeps it current.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/profile"
)

const (
	walkBegin = "<!-- walk: written by `make sizing` and `make sizing-walk` from the figures it names; do not edit -->"
	walkEnd   = "<!-- walk end -->"

	walkSpansPerSecond = 5_000_000
	walkSpansPerTrace  = 20
	walkPeakFactor     = 2 // the peak over the steady load the HPA's maximum is for
	// The base's gateway pod and HPA (deploy/kubernetes/base).
	walkPodCPUs     = 1.0
	walkPodMemory   = 5 << 30
	walkCPUTarget   = 0.7
	walkSpansTarget = 22_000 // the autoscaling component's spans/s for the hottest gateway
)

// walkInputs are the figures the walk starts from.
type walkInputs struct {
	consts     harness.Sizing
	skew       []harness.RingSkewRow
	numTraces  float64 // the profile's tail_sampling num_traces
	cacheSize  float64 // each decision cache
	wait       time.Duration
	softShare  float64 // memory_limiter's soft limit, a share of the pod's limit
	agentCPU   float64 // highest agent CPU s / 10k spans of the load steps
	churnCost  float64 // s of full traffic per change, k8s resolver, 3<->4 gateways (upper)
	changeCPU  float64 // ns of one guard's membership change at 200 gateways (median)
	changeLoad float64 // traces in flight in that benchmark
}

func readWalkInputs() (walkInputs, error) {
	var in walkInputs
	var err error
	if in.consts, err = harness.SizingConstants(); err != nil {
		return in, err
	}
	if in.skew, err = harness.RingSkew(); err != nil {
		return in, err
	}
	prof, err := profile.Effective("gateway", nil)
	if err != nil {
		return in, err
	}
	ts := profile.Get(prof, "processors", "tail_sampling")
	if in.numTraces, err = strconv.ParseFloat(fmt.Sprint(profile.Get(ts, "num_traces")), 64); err != nil {
		return in, err
	}
	if in.cacheSize, err = strconv.ParseFloat(fmt.Sprint(profile.Get(ts, "decision_cache", "sampled_cache_size")), 64); err != nil {
		return in, err
	}
	if in.wait, err = time.ParseDuration(fmt.Sprint(profile.Get(ts, "decision_wait"))); err != nil {
		return in, err
	}
	if in.softShare, err = softLimitShare(prof); err != nil {
		return in, err
	}
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "docs", "benchmarks.md"))
	if err != nil {
		return in, err
	}
	bench := string(data)
	var changeRuns []float64
	for _, line := range strings.Split(bench, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		switch {
		case strings.HasPrefix(line, "| tailgate | ") && len(cells) == 6:
			// Load steps: binary, offered, achieved, lossless, agent, gateway.
			if v, err := strconv.ParseFloat(strings.TrimSpace(cells[4]), 64); err == nil {
				in.agentCPU = max(in.agentCPU, v)
			}
		case strings.HasPrefix(line, "| k8s | ") && len(cells) >= 4:
			// Churn: resolver, runs, changes, cost ("1.9-2.7 s").
			cost := strings.TrimSuffix(strings.TrimSpace(cells[3]), " s")
			if _, hi, found := strings.Cut(cost, "-"); found {
				cost = hi
			}
			if v, err := strconv.ParseFloat(cost, 64); err == nil {
				in.churnCost = v
			}
		case strings.HasPrefix(line, "BenchmarkMembershipChange/gateways=200-"):
			f := strings.Fields(line)
			for i := 1; i < len(f); i++ {
				if f[i] == "ns/op" {
					if v, err := strconv.ParseFloat(f[i-1], 64); err == nil {
						changeRuns = append(changeRuns, v)
					}
				}
			}
		}
	}
	in.changeLoad = 50_000 // BenchmarkMembershipChange's traces in flight
	if len(changeRuns) > 0 {
		sort.Float64s(changeRuns)
		in.changeCPU = changeRuns[len(changeRuns)/2]
	}
	switch {
	case in.agentCPU == 0:
		return in, fmt.Errorf("docs/benchmarks.md: no load steps of tailgate (make bench)")
	case in.churnCost == 0:
		return in, fmt.Errorf("docs/benchmarks.md: no k8s row in the churn section (make bench-churn)")
	case in.changeCPU == 0:
		return in, fmt.Errorf("docs/benchmarks.md: no membership change at 200 gateways (make bench-guard)")
	}
	return in, nil
}

// skewAt is the 99th percentile of the hottest/mean ratio for the
// smallest tabulated tier at least n gateways large (the largest one
// beyond the table): what 99 tiers in 100 of that size stay within.
func (in walkInputs) skewAt(n int) float64 { return in.skewRowAt(n).P99 }

// medianSkewAt is the median hottest/mean ratio for such a tier: where a
// tier of that size typically lands.
func (in walkInputs) medianSkewAt(n int) float64 { return in.skewRowAt(n).Median }

func (in walkInputs) skewRowAt(n int) harness.RingSkewRow {
	for _, r := range in.skew {
		if r.Gateways >= n {
			return r
		}
	}
	return in.skew[len(in.skew)-1]
}

func renderWalk(in walkInputs) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	S, P := float64(walkSpansPerSecond), float64(walkSpansPerTrace)
	podSpans := walkPodCPUs * walkCPUTarget / (in.consts.CPUSecondsPer10kSpans / 10_000)
	nMean := int(math.Ceil(S / podSpans))
	skew := in.skewAt(nMean)
	nHot := int(math.Ceil(float64(nMean) * skew))
	skew = max(skew, in.skewAt(nHot))
	hotTraces := S / P / float64(nHot) * skew
	neededTraces := hotTraces * (in.wait + time.Second).Seconds() * 1.5
	live := in.consts.IdleHeap + in.numTraces*(in.consts.IdleHeapPerNumTrace+P*in.consts.HeapPerBufferedSpan) + 2*in.cacheSize*in.consts.DecisionCacheEntry
	// The custom-metrics HPA holds the hottest gateway at its target: the
	// tier settles at the mean's count times the skew of the ring it
	// lands on, typically the median, at most the 99th percentile.
	nCustomMean := S / walkSpansTarget
	nCustom := int(math.Ceil(nCustomMean * in.medianSkewAt(int(nCustomMean))))
	nCustomMax := int(math.Ceil(nCustomMean * in.skewAt(int(nCustomMean))))
	inFlight := hotTraces * 3 * in.wait.Seconds() // the guard's active window, 3 x decision_wait
	moved := 1 / float64(nHot+1)
	costSeconds := in.churnCost * 4 * moved // the churn suite's change moves 1/4

	w("%s\n## Worked example: 5M spans/s\n\n", walkBegin)
	w("%d spans/s in traces of %d spans (%d traces/s), the base's gateway pod (%.0f CPU, %d GiB) and HPA, the profile's defaults (num_traces %.0f, decision_wait %s). Each figure comes from the constants above, the ring skew below, or docs/benchmarks.md.\n\n",
		walkSpansPerSecond, walkSpansPerTrace, walkSpansPerSecond/walkSpansPerTrace, walkPodCPUs, walkPodMemory>>30, in.numTraces, in.wait)
	w("- **Gateways, for the mean**: one pod at %.0f%% CPU takes %.0f spans/s (cpu_seconds_per_10k_spans), so %d gateways hold the mean at the CPU target. The ring gives the hottest of them up to %.2fx the mean share (the ring skew's 99th percentile for that size): it would run at %.0f%%.\n",
		100*walkCPUTarget, podSpans, nMean, skew, 100*walkCPUTarget*skew)
	w("- **Gateways, for the hottest**: %d x %.2f = **%d gateways** keep the hottest at %.0f%% CPU. The custom-metrics HPA holds the hottest gateway at %d spans/s, below that: the tier settles at %.0f gateways' worth of mean times the skew of the ring it lands on, typically %d gateways (the median skew), at most %d (the 99th percentile).\n",
		nMean, skew, nHot, 100*walkCPUTarget, walkSpansTarget, nCustomMean, nCustom, nCustomMax)
	w("- **HPA range**: minReplicas holds the steady load, %d (CPU mode) or %d (custom metrics); maxReplicas for a %dx peak, %d or %d.\n",
		nHot, nCustomMax, walkPeakFactor, walkPeakFactor*nHot, walkPeakFactor*nCustomMax)
	w("- **num_traces**: the hottest of %d gateways gets %.0f new traces/s; x (decision_wait + 1 s) x 1.5 = %.0f, within the profile's %.0f.\n",
		nHot, hotTraces, neededTraces, in.numTraces)
	w("- **Memory per gateway**, every buffer full at num_traces %.0f (step 3 above): %.0f MiB of live heap, %.0f%% of the %d GiB limit (step 3 allows half of memory_limiter's soft limit, %.1f%%); %d GiB for the tier's limits.\n",
		in.numTraces, live/(1<<20), 100*live/walkPodMemory, walkPodMemory>>30, 100*in.softShare/2, nHot*(walkPodMemory>>30))
	w("- **Agents**: one per node, whatever their count: together they spend %.1f CPU cores on %d spans/s at the highest agent cost of the load steps (%.3f CPU s per 10k spans).\n",
		S*in.agentCPU/10_000, walkSpansPerSecond, in.agentCPU)
	w("- **One scale event** moves 1/%d of the trace IDs. The guard keeps the traces in flight that it splits whole: %.1f s of full traffic per change in the churn suite, where a change moves 1/4, is %.3f s here, about %.0f spans kept beyond the policies per change. Each gateway's guard spends about %.0f ms of one core on the change (BenchmarkMembershipChange at 200 gateways with %.0f traces in flight; the hottest gateway here has about %.0f).\n",
		nHot+1, in.churnCost, costSeconds, costSeconds*S, in.changeCPU/1e6, in.changeLoad, inFlight)
	w("%s\n", walkEnd)
	return b.String()
}

// walkSection is the walk section of the page at path, "" without one.
func walkSection(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return docs.Marked(string(data), walkBegin, walkEnd)
}

// writeWalk rewrites the walk section of the page at path from the
// committed figures.
func writeWalk(path string) error {
	in, err := readWalkInputs()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	page, section := string(data), renderWalk(in)
	if k := strings.Index(page, ringSkewBegin); docs.Marked(page, walkBegin, walkEnd) == "" && k >= 0 {
		// First written: after the measured sections, before the ring skew.
		page = page[:k] + section + "\n" + page[k:]
	} else {
		page = docs.Splice(page, section, walkBegin, walkEnd)
	}
	fmt.Print(section)
	return os.WriteFile(path, []byte(page), 0o644)
}
