package main

// rebalance_guard's cost of one membership change at 3, 50 and 200
// gateways: the processor's BenchmarkMembershipChange (a new ring, the
// scan of the traces in flight, a marker per moved trace). `make
// bench-guard` writes its section of docs/benchmarks.md; `make bench` keeps
// it, as it keeps the churn section.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/harness"
)

const (
	membershipBegin = "<!-- membership change: written by `make bench-guard`; `make bench` keeps it -->"
	membershipEnd   = "<!-- membership change end -->"
)

// membershipBenchmark runs the processor's membership-change benchmark and
// returns its result lines.
func membershipBenchmark() (string, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkMembershipChange", "-benchmem", "-benchtime", "20x", "-count", "3", ".")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "components", "processor", "rebalanceguardprocessor")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("membership benchmark: %w\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n"), nil
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

// splice replaces the section between begin and end in report with
// section, or appends section.
func splice(report, section, begin, end string) string {
	i, j := strings.Index(report, begin), strings.Index(report, end)
	if i < 0 || j < i {
		return strings.TrimRight(report, "\n") + "\n\n" + section
	}
	return report[:i] + section + strings.TrimLeft(report[j+len(end):], "\n")
}

// existing is the section between begin and end of the file at path, if any.
func existing(path, begin, end string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return ""
	}
	return s[i:j+len(end)] + "\n"
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
	return os.WriteFile(out, []byte(splice(string(data), section, membershipBegin, membershipEnd)), 0o644)
}
