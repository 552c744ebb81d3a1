package harness

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Sizing is the gateway's measured constants, as docs/sizing.md publishes
// them (written by `make sizing`, test/cmd/sizing).
type Sizing struct {
	HeapPerBufferedSpan   float64 // bytes of live heap per span tail_sampling buffers
	RSSPerBufferedSpan    float64
	DecisionCacheEntry    float64 // bytes per entry of either decision cache
	IdleHeap              float64 // bytes of live heap, an idle gateway at num_traces 0
	IdleHeapPerNumTrace   float64 // bytes allocated up front per unit of num_traces
	IdleRSS               float64 // bytes, an idle gateway as shipped
	CPUSecondsPer10kSpans float64 // one gateway's CPU time per 10k spans received
}

// SizingConstants reads the constants table of docs/sizing.md.
func SizingConstants() (Sizing, error) {
	path := filepath.Join(RepoRoot(), "docs", "sizing.md")
	f, err := os.Open(path)
	if err != nil {
		return Sizing{}, err
	}
	defer f.Close()
	values := map[string]float64{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- constants"):
			in = true
		case strings.HasPrefix(line, "<!-- end constants"):
			in = false
		case in && strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| Constant"):
			cells := strings.Split(strings.Trim(line, "| "), "|")
			if len(cells) != 2 {
				return Sizing{}, fmt.Errorf("%s: malformed constant row %q", path, line)
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(cells[1]), 64)
			if err != nil {
				return Sizing{}, fmt.Errorf("%s: %q: %w", path, line, err)
			}
			values[strings.TrimSpace(cells[0])] = v
		}
	}
	if err := sc.Err(); err != nil {
		return Sizing{}, err
	}
	s := Sizing{}
	for name, into := range map[string]*float64{
		"heap_per_buffered_span_bytes":  &s.HeapPerBufferedSpan,
		"rss_per_buffered_span_bytes":   &s.RSSPerBufferedSpan,
		"decision_cache_entry_bytes":    &s.DecisionCacheEntry,
		"idle_heap_bytes":               &s.IdleHeap,
		"idle_heap_per_num_trace_bytes": &s.IdleHeapPerNumTrace,
		"idle_rss_bytes":                &s.IdleRSS,
		"cpu_seconds_per_10k_spans":     &s.CPUSecondsPer10kSpans,
	} {
		v, ok := values[name]
		if !ok {
			return Sizing{}, fmt.Errorf("%s lacks the constant %s: run `make sizing`", path, name)
		}
		*into = v
	}
	return s, nil
}

// RingSkewRow is one tier size of docs/sizing.md's ring skew table
// (written by `make ring-skew`): the hottest gateway's share over the
// mean share across the random pod-IP sets: its median, 99th percentile
// and worst.
type RingSkewRow struct {
	Gateways           int
	Median, P99, Worst float64
}

// RingSkew reads docs/sizing.md's ring skew table, smallest tier first.
func RingSkew() ([]RingSkewRow, error) {
	path := filepath.Join(RepoRoot(), "docs", "sizing.md")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(data)
	i, j := strings.Index(s, "<!-- ring skew:"), strings.Index(s, "<!-- ring skew end -->")
	if i < 0 || j < i {
		return nil, fmt.Errorf("%s has no ring skew section: run `make ring-skew`", path)
	}
	var rows []RingSkewRow
	for _, line := range strings.Split(s[i:j], "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) < 3 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			continue // the header and its rule
		}
		if len(cells) < 4 {
			return nil, fmt.Errorf("%s: ring skew row %q: want gateways, median, p99, worst", path, line)
		}
		r := RingSkewRow{Gateways: n}
		for k, into := range []*float64{&r.Median, &r.P99, &r.Worst} {
			if *into, err = strconv.ParseFloat(strings.TrimSpace(cells[k+1]), 64); err != nil {
				return nil, fmt.Errorf("%s: ring skew row %q: %w", path, line, err)
			}
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: the ring skew table has no rows", path)
	}
	return rows, nil
}

// RingSkewWorst is the largest hottest/mean ratio of docs/sizing.md's ring
// skew table: how much more than the mean share of spans and traces the
// hottest gateway gets, at any tier size.
func RingSkewWorst() (float64, error) {
	rows, err := RingSkew()
	if err != nil {
		return 0, err
	}
	worst := 0.0
	for _, r := range rows {
		worst = max(worst, r.Worst)
	}
	return worst, nil
}

// HPATolerance is the HPA controller's default tolerance
// (--horizontal-pod-autoscaler-tolerance, which the test controller-manager
// keeps): within it of the target, the HPA does not scale, so a metric may
// sit this far above its target for good.
const HPATolerance = 0.1
