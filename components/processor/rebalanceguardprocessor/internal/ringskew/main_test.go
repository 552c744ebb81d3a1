package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSizingPageHasTheCurrentRingSkew: docs/sizing.md's ring skew section
// is what this command writes from the ring as it is now; a change to the
// ring (or to this command) without `make ring-skew` fails here.
func TestSizingPageHasTheCurrentRingSkew(t *testing.T) {
	page, err := os.ReadFile("../../../../../docs/sizing.md")
	require.NoError(t, err)
	assert.Equal(t, render(), sectionOf(string(page)), "docs/sizing.md's ring skew section is stale: run make ring-skew")
}
