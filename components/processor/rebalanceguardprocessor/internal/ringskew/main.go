// Command ringskew is `make ring-skew`: it computes how unevenly the
// agents' consistent-hash ring (the loadbalancing exporter's, which
// rebalance_guard replicates; RingShares) spreads trace IDs over gateways
// with pod IPs, at tier sizes from 3 to 200, and writes the table and what
// it means for sizing into its section of docs/sizing.md. The shares are
// exact (ring arcs, not sampled); the pod IPs are random in a /16 from a
// fixed seed, so the section is the same on every run and a test
// (main_test.go) keeps the committed one current.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
)

const (
	begin = "<!-- ring skew: written by `make ring-skew`; `make sizing` keeps it -->"
	end   = "<!-- ring skew end -->"
)

// sizes are the tier sizes reported; sets is how many random IP sets each.
var sizes = []int{3, 5, 10, 20, 50, 100, 200}

const sets = 20

func main() {
	out := flag.String("out", "../../../../../docs/sizing.md", "the sizing page whose ring skew section is written")
	flag.Parse()
	data, err := os.ReadFile(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ringskew:", err)
		os.Exit(1)
	}
	section := render()
	fmt.Print(section)
	if err := os.WriteFile(*out, []byte(splice(string(data), section)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "ringskew:", err)
		os.Exit(1)
	}
}

// skew is the hottest gateway's share over the mean share, 1/n.
type skew struct{ mean, worst float64 }

// measure returns, for n gateways, the hottest/mean ratio averaged over
// the random sets and the worst of them.
func measure(rng *rand.Rand, n int) skew {
	var s skew
	for range sets {
		seen := map[string]bool{}
		var endpoints []string
		for len(endpoints) < n {
			// A pod IP in 10.244.0.0/16, as a cluster's pod CIDR hands them.
			ep := fmt.Sprintf("10.244.%d.%d:4317", rng.IntN(256), 1+rng.IntN(254))
			if !seen[ep] {
				seen[ep] = true
				endpoints = append(endpoints, ep)
			}
		}
		shares := rebalanceguardprocessor.RingShares(endpoints)
		hottest := 0.0
		for _, v := range shares {
			hottest = max(hottest, v)
		}
		ratio := hottest * float64(n)
		s.mean += ratio / sets
		s.worst = max(s.worst, ratio)
	}
	return s
}

func render() string {
	rng := rand.New(rand.NewPCG(2026, 36))
	var b strings.Builder
	fmt.Fprintln(&b, begin)
	fmt.Fprintln(&b, "## The hottest gateway")
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "The agents' ring (200 points per gateway over 131071 positions, crc32 of each pod's address) does not split trace IDs evenly: one gateway gets more than the mean share 1/N. For each size, %d random sets of pod IPs in a /16; the share of each gateway is computed exactly from the ring (rebalance_guard's `RingShares`, the same ring the agents build).\n", sets)
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| Gateways | Hottest / mean, average | Hottest / mean, worst | Hottest at a 70% mean CPU target, worst |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	worst := 0.0
	for _, n := range sizes {
		s := measure(rng, n)
		worst = max(worst, s.worst)
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.0f%% |\n", n, s.mean, s.worst, 70*s.worst)
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "What it means for sizing (the steps above size for the mean share):\n\n")
	fmt.Fprintf(&b, "- The hottest gateway gets up to %.2fx the mean share of spans and of new traces, at any size: the ratio does not shrink as the tier grows. Each gateway's share is the sum of its 200 points' arcs and varies around 1/N by the same relative amount at every size, and a larger tier has more gateways to draw the largest from.\n", worst)
	fmt.Fprintf(&b, "- **num_traces** is per gateway, and the hottest fills first: multiply T in step 2 by the worst ratio for your size (%.2f at most).\n", worst)
	fmt.Fprintf(&b, "- **Replicas**: an autoscaler that holds the mean at its target holds the hottest gateway at the target x the ratio. The CPU HPA's 70%% leaves the hottest at up to %.0f%% of its CPU. Size replicas for the hottest: step 1 x the worst ratio for your size.\n", 70*worst)
	fmt.Fprintln(&b, end)
	return b.String()
}

// splice replaces the section in page, or appends it.
func splice(page, section string) string {
	i, j := strings.Index(page, begin), strings.Index(page, end)
	if i < 0 || j < i {
		return strings.TrimRight(page, "\n") + "\n\n" + section
	}
	return page[:i] + section + strings.TrimLeft(page[j+len(end):], "\n")
}

// sectionOf is the ring skew section of page, "" without one.
func sectionOf(page string) string {
	i, j := strings.Index(page, begin), strings.Index(page, end)
	if i < 0 || j < i {
		return ""
	}
	return page[i:j+len(end)] + "\n"
}
