package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestWalkIsCurrent: docs/sizing.md's 5M spans/s walk is what the
// committed constants, ring skew, profile and benchmarks give; a new
// measurement or default without `make sizing-walk` fails here.
func TestWalkIsCurrent(t *testing.T) {
	in, err := readWalkInputs()
	require.NoError(t, err)
	assert.Equal(t, renderWalk(in), walkSection(filepath.Join(harness.RepoRoot(), "docs", "sizing.md")),
		"docs/sizing.md's walk is stale: run make sizing-walk")
}
