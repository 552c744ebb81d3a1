// Command ringskew is `make ring-skew`: it computes how unevenly the
// agents' consistent-hash ring (the loadbalancing exporter's, which
// rebalance_guard replicates; RingShares) spreads trace IDs over gateways
// with pod IPs, at tier sizes from 3 to 200, and writes the table and what
// it means for sizing into its section of docs/sizing.md. The shares are
// exact (ring arcs, not sampled); the pod IPs are random in a /16 from a
// fixed seed, so the section is the same on every run and a test
// (main_test.go) keeps the committed one current. It also simulates the
// HPA on the ring (hpa.go) and writes that section of docs/scaling.md.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
)

const (
	begin = "<!-- ring skew: written by `make ring-skew`; `make sizing` keeps it -->"
	end   = "<!-- ring skew end -->"
)

// sizes are the tier sizes reported; setsFor is how many random IP sets
// each: enough for the tail (the 99th percentile and the worst), fewer for
// the large tiers, whose ratio varies less and whose rings cost more.
var sizes = []int{3, 5, 10, 20, 50, 100, 200}

func setsFor(n int) int {
	if n <= 20 {
		return 1000
	}
	return 100
}

func main() {
	sizingPage := flag.String("out", "../../../../../docs/sizing.md", "the sizing page whose ring skew section is written")
	scalingPage := flag.String("scaling", "../../../../../docs/scaling.md", "the scaling page whose HPA simulation section is written")
	flag.Parse()
	skewSection, hpaSection := render()
	for _, w := range []struct{ page, begin, end, section string }{
		{*sizingPage, begin, end, skewSection},
		{*scalingPage, hpaBegin, hpaEnd, hpaSection},
	} {
		data, err := os.ReadFile(w.page)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ringskew:", err)
			os.Exit(1)
		}
		fmt.Print(w.section)
		if err := os.WriteFile(w.page, []byte(splice(string(data), w.begin, w.end, w.section)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ringskew:", err)
			os.Exit(1)
		}
	}
}

// skew is the distribution of the hottest gateway's share over the mean
// share, 1/n, across the random sets.
type skew struct{ median, p99, worst float64 }

// measure returns, for n gateways, the hottest/mean ratio's median, 99th
// percentile and worst over the random sets.
func measure(rng *rand.Rand, n int) skew {
	ratios := make([]float64, 0, setsFor(n))
	for range setsFor(n) {
		taken := map[string]bool{}
		endpoints := make([]string, n)
		for i := range endpoints {
			endpoints[i] = newEndpoint(rng, taken)
		}
		hottest := 0.0
		for _, v := range rebalanceguardprocessor.RingShares(endpoints) {
			hottest = max(hottest, v)
		}
		ratios = append(ratios, hottest*float64(n))
	}
	slices.Sort(ratios)
	return skew{median: ratios[len(ratios)/2], p99: ratios[len(ratios)*99/100], worst: ratios[len(ratios)-1]}
}

// render returns the ring skew section of docs/sizing.md and the HPA
// simulation section of docs/scaling.md, which uses the skew's tail.
func render() (skewSection, hpaSection string) {
	rng := rand.New(rand.NewPCG(2026, 36))
	var b strings.Builder
	fmt.Fprintln(&b, begin)
	fmt.Fprintln(&b, "## The hottest gateway")
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "The agents' ring (200 points per gateway over 131071 positions, crc32 of each pod's address) does not split trace IDs evenly: one gateway gets more than the mean share 1/N. For each size, %d random sets of pod IPs in a /16 (%d from 50 gateways up); the share of each gateway is computed exactly from the ring (rebalance_guard's `RingShares`, the same ring the agents build).\n", setsFor(3), setsFor(50))
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| Gateways | Hottest / mean, median | 99th percentile | Worst of the sets | Hottest at a 70% mean CPU target, 99th percentile |")
	fmt.Fprintln(&b, "|---|---|---|---|---|")
	var p99, worst float64
	for _, n := range sizes {
		s := measure(rng, n)
		p99, worst = max(p99, s.p99), max(worst, s.worst)
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f | %.0f%% |\n", n, s.median, s.p99, s.worst, 70*s.p99)
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "What it means for sizing (the steps above size for the mean share):\n\n")
	fmt.Fprintf(&b, "- The hottest gateway gets more than the mean share of spans and of new traces at every size: about 1.1-1.2x in a typical tier, and up to %.2fx in one tier in a hundred (the 99th percentile, at its widest for tiers of 5 to 20 gateways). Each gateway's share is the sum of its 200 points' arcs, so it varies around 1/N by about the same relative amount at every size.\n", p99)
	fmt.Fprintf(&b, "- **num_traces** is per gateway, and the hottest fills first: multiply T in step 2 by the 99th percentile for your size (up to %.2f; %.2f at worst).\n", p99, worst)
	fmt.Fprintf(&b, "- **Replicas**: an autoscaler that holds the mean at its target holds the hottest gateway at the target x the ratio. At the CPU HPA's 70%% the hottest reaches %.0f%% of its CPU in one tier in a hundred: it is saturated, and refuses data first. Size replicas for the hottest: step 1 x the ratio for your size. The custom-metrics HPA holds the hottest gateway at its target instead ([scaling.md](scaling.md#autoscaling)).\n", 70*p99)
	fmt.Fprintln(&b, end)
	return b.String(), renderHPA(p99)
}

// splice replaces the section between begin and end in page, or appends it.
func splice(page, begin, end, section string) string {
	i, j := strings.Index(page, begin), strings.Index(page, end)
	if i < 0 || j < i {
		return strings.TrimRight(page, "\n") + "\n\n" + section
	}
	return page[:i] + section + strings.TrimLeft(page[j+len(end):], "\n")
}

// sectionOf is the section between begin and end of page, "" without one.
func sectionOf(page, begin, end string) string {
	i, j := strings.Index(page, begin), strings.Index(page, end)
	if i < 0 || j < i {
		return ""
	}
	return page[i:j+len(end)] + "\n"
}
