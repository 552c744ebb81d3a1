package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestChurnSectionSurvivesTheLoadBenchmark: `make bench-churn` and `make
// bench` each write their own part of docs/benchmarks.md; neither erases
// the other's.
func TestChurnSectionSurvivesTheLoadBenchmark(t *testing.T) {
	dir := t.TempDir()
	records := filepath.Join(dir, "churn.jsonl")
	require.NoError(t, os.WriteFile(records, []byte(
		`{"Resolver":"k8s","Changes":8,"CostSeconds":2.5,"BoundSeconds":4.9,"KeptShareOn":0.09,"InFlight":40,"CompleteOn":40,"CompleteOff":33,"PartialOff":7}`+"\n"+
			`{"Resolver":"k8s","Changes":8,"CostSeconds":3.1,"BoundSeconds":4.9,"KeptShareOn":0.1,"InFlight":41,"CompleteOn":41,"CompleteOff":30,"PartialOff":11}`+"\n"), 0o644))
	out := filepath.Join(dir, "benchmarks.md")
	require.NoError(t, os.WriteFile(out, []byte("# Benchmarks\n\nold load figures\n"), 0o644))

	require.NoError(t, writeChurnSection(records, out))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Contains(t, string(data), "old load figures")
	assert.Contains(t, string(data), "| k8s | 2 | 8 | 2.5-3.1 s | 4.9 s | 9.0-10.0% | 81 of 81 | 18 partial |")

	// The load benchmark rewrites the file and keeps the section.
	section := existingChurn(out)
	require.NotEmpty(t, section)
	report := spliceChurn("# Benchmarks\n\nnew load figures\n", section)
	assert.Contains(t, report, "new load figures")
	assert.NotContains(t, report, "old load figures")
	assert.Equal(t, 1, strings.Count(report, churnBegin))
	assert.Contains(t, report, "2.5-3.1 s")
	// Spliced again (the next churn run), still one section.
	assert.Equal(t, 1, strings.Count(spliceChurn(report, section), churnBegin))
}
