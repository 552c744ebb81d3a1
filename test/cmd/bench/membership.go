package main

// rebalance_guard's cost of one membership change at 3, 50 and 200
// gateways: the processor's BenchmarkMembershipChange (a new ring, the
// scan of the traces in flight, a marker per moved trace). `make
// bench-guard` writes its section of docs/benchmarks.md; `make bench` keeps
// it, as it keeps the churn section.

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/docs"
)

const (
	membershipBegin = "<!-- membership change: written by `make bench-guard`; `make bench` keeps it -->"
	membershipEnd   = "<!-- membership change end -->"
)

// membershipBenchmark runs the processor's membership-change benchmark and
// returns its result lines.
func membershipBenchmark() (string, error) {
	return guardBenchmark("BenchmarkMembershipChange", "20x")
}

func renderMembership(lines string) string {
	var b strings.Builder
	fmt.Fprintln(&b, membershipBegin)
	fmt.Fprintf(&b, "## rebalance_guard: one membership change at 3, 50 and 200 gateways (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(&b, "What one gateway's guard does when a gateway joins a tier of N, with 50000 traces in flight on it (`go test -bench BenchmarkMembershipChange` in components/processor/rebalanceguardprocessor): it builds the new ring (N x 200 points), scans the traces in flight for those whose owner changed, and sends a marker span for each (markers/op: about 1/(N+1) of them move). ns/op is the CPU of that one change on one core; B/op is what it allocates, garbage once the markers are sent, apart from the new ring it keeps (N x 200 items of 8 bytes). Nothing else of the guard grows with N: a span's owner is one binary search of the ring.")
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "```\n%s\n```\n", lines)
	fmt.Fprintln(&b, membershipEnd)
	return b.String()
}

func writeMembershipSection(out string) error {
	lines, err := membershipBenchmark()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := renderMembership(lines)
	fmt.Print(section)
	return os.WriteFile(out, []byte(docs.Splice(string(data), section, membershipBegin, membershipEnd)), 0o644)
}
