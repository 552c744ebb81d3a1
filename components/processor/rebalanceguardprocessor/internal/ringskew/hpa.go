package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
)

// The HPA simulation decides what the custom-metrics HPA scales on: the
// mean over the gateways (what a Pods metric's AverageValue reads) or the
// hottest gateway (an External metric, the maximum over pods). It runs the
// HPA controller's algorithm with the shipped behavior at a constant load
// against the ring's exact shares: every scale-out adds a pod with a new
// IP, every scale-in removes the newest, so the ring, and with it the
// hottest gateway's share, changes with each step, as in a cluster.
const (
	hpaBegin = "<!-- hpa simulation: written by `make ring-skew` -->"
	hpaEnd   = "<!-- hpa simulation end -->"

	syncPeriod      = 15  // s, the HPA controller's --horizontal-pod-autoscaler-sync-period
	rateWindow      = 4   // sync periods in the adapter's rate(...[1m])
	tolerance       = 0.1 // the controller's default: no change within ±10% of the target
	minReplicas     = 3
	scaleDownWindow = 300 / syncPeriod // stabilizationWindowSeconds: 300
	scaleDownEvery  = 120 / syncPeriod // one pod per 120 s
	scaleUpEvery    = 60 / syncPeriod  // +100% or +2 pods per 60 s
	simulated       = 2 * 3600 / syncPeriod
	settled         = 3600 / syncPeriod // only the second hour is reported
	hpaSets         = 200
)

// loads are the constant loads simulated, in units of the per-gateway
// target (load 10: ten gateways' worth at target).
var loads = []float64{2.5, 4.5, 8.5, 16.5, 32.5, 64.5}

type hpaMode int

const (
	onMean hpaMode = iota
	// onMeanForTheTail: the mean, with the target divided by the ring's
	// 99th percentile skew, so that the hottest gateway of 99 tiers in 100
	// stays at the target.
	onMeanForTheTail
	onHottest
)

func (m hpaMode) String() string {
	switch m {
	case onMean:
		return "mean (Pods, AverageValue)"
	case onMeanForTheTail:
		return "mean, target ÷ the 99th percentile skew"
	}
	return "hottest (External, max over pods)"
}

// hpaRun is what one simulated hour at a constant load shows.
type hpaRun struct {
	replicas float64 // mean replica count
	settle   int     // replica changes in the first hour, from minReplicas
	changes  int     // replica changes (each moves ~1/N of the trace IDs)
	hotOver  float64 // share of the time the hottest gateway is above the target + tolerance
	hotWorst float64 // the hottest gateway's worst load / target
}

type pod struct {
	endpoint string
	loads    []float64 // its load / target at each sync, newest last
}

// newEndpoint is a pod IP in 10.244.0.0/16, as a cluster's pod CIDR hands
// them, with the OTLP port, not yet in taken (which it joins).
func newEndpoint(rng *rand.Rand, taken map[string]bool) string {
	for {
		ep := fmt.Sprintf("10.244.%d.%d:4317", rng.IntN(256), 1+rng.IntN(254))
		if !taken[ep] {
			taken[ep] = true
			return ep
		}
	}
}

// simulate runs the HPA on mode at a constant load for two hours and
// reports the second.
func simulate(rng *rand.Rand, mode hpaMode, load, p99 float64) hpaRun {
	taken := map[string]bool{}
	var pods []*pod
	for range minReplicas {
		pods = append(pods, &pod{endpoint: newEndpoint(rng, taken)})
	}
	var recommendations []int
	lastUp, lastDown := -scaleUpEvery, -scaleDownEvery
	var run hpaRun
	var hotOver int
	var shares map[string]float64
	for step := range simulated {
		// Each gateway takes its share of the load for this period; the
		// shares change only with the set.
		if shares == nil {
			endpoints := make([]string, len(pods))
			for i, p := range pods {
				endpoints[i] = p.endpoint
			}
			shares = rebalanceguardprocessor.RingShares(endpoints)
		}
		hottestNow := 0.0
		for _, p := range pods {
			l := shares[p.endpoint] * load
			p.loads = append(p.loads, l)
			hottestNow = max(hottestNow, l)
		}
		// The metric: each pod's rate over the last minute (over its life,
		// if shorter), then the mean or the maximum over pods.
		var metric float64
		for _, p := range pods {
			w := p.loads[max(0, len(p.loads)-rateWindow):]
			var sum float64
			for _, l := range w {
				sum += l
			}
			r := sum / float64(len(w))
			switch mode {
			case onMean:
				metric += r / float64(len(pods))
			case onMeanForTheTail:
				metric += r * p99 / float64(len(pods))
			case onHottest:
				metric = max(metric, r)
			}
		}
		n := len(pods)
		desired := n
		if math.Abs(metric-1) > tolerance {
			desired = max(minReplicas, int(math.Ceil(metric*float64(n))))
		}
		recommendations = append(recommendations, desired)
		if len(recommendations) > scaleDownWindow {
			recommendations = recommendations[1:]
		}
		next := n
		switch {
		case desired > n && step-lastUp >= scaleUpEvery:
			next = min(desired, n+max(n, 2))
			lastUp = step
		case desired < n:
			// Scale in to the highest recommendation of the window, one pod
			// per period.
			if stable := slices.Max(recommendations); stable < n && step-lastDown >= scaleDownEvery {
				next = n - 1
				lastDown = step
			}
		}
		if step < simulated-settled && next != n {
			run.settle++
		}
		if step >= simulated-settled {
			run.replicas += float64(n) / settled
			run.hotWorst = max(run.hotWorst, hottestNow)
			if hottestNow > 1+tolerance {
				hotOver++
			}
			if next != n {
				run.changes++
			}
		}
		if next != n {
			shares = nil
		}
		for len(pods) < next {
			pods = append(pods, &pod{endpoint: newEndpoint(rng, taken)})
		}
		for len(pods) > next {
			delete(taken, pods[len(pods)-1].endpoint)
			pods = pods[:len(pods)-1]
		}
	}
	run.hotOver = float64(hotOver) / settled
	return run
}

func renderHPA(p99 float64) string {
	rng := rand.New(rand.NewPCG(2026, 362))
	var b strings.Builder
	fmt.Fprintln(&b, hpaBegin)
	fmt.Fprintf(&b, "Simulated: the HPA controller's algorithm (15 s sync, ±10%% tolerance, a one-minute rate) with the shipped behavior (out by +100%% or +2 per minute, in by one pod per 2 minutes after 5 minutes of lower recommendations, minReplicas 3), at a constant load, against the ring's exact shares. Each scale-out adds a pod with a new IP and each scale-in removes the newest, so the ring changes with every step. %d random runs per load; the first hour is the climb from 3 replicas, the second the settled tier. Load is in gateways' worth at the target; rates carry no noise here, which a real max over pods adds to. Generated by `make ring-skew`.\n", hpaSets)
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| Load | Scales on | Replicas, mean | Scale events from 3 replicas to settled, mean / worst | Replica changes in the second hour, mean / worst | Hottest above target +10%, share of time | Hottest's worst / target |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	for _, load := range loads {
		for _, mode := range []hpaMode{onMean, onMeanForTheTail, onHottest} {
			var replicas, settle, changes, over, worst []float64
			for range hpaSets {
				r := simulate(rng, mode, load, p99)
				replicas = append(replicas, r.replicas)
				settle = append(settle, float64(r.settle))
				changes = append(changes, float64(r.changes))
				over = append(over, r.hotOver)
				worst = append(worst, r.hotWorst)
			}
			fmt.Fprintf(&b, "| %.1f | %s | %.1f | %.1f / %.0f | %.2f / %.0f | %.0f%% | %.2f |\n", load, mode,
				mean(replicas), mean(settle), slices.Max(settle), mean(changes), slices.Max(changes), 100*mean(over), slices.Max(worst))
		}
	}
	fmt.Fprintln(&b, hpaEnd)
	return b.String()
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
