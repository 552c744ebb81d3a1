package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPagesHaveTheCurrentRingSkewAndHPASimulation: docs/sizing.md's ring skew
// section and docs/scaling.md's HPA simulation are what this command
// writes from the ring as it is now; a change to the
// ring (or to this command) without `make ring-skew` fails here.
func TestPagesHaveTheCurrentRingSkewAndHPASimulation(t *testing.T) {
	skewSection, hpaSection := render()
	page, err := os.ReadFile("../../../../../docs/sizing.md")
	require.NoError(t, err)
	assert.Equal(t, skewSection, sectionOf(string(page), begin, end), "docs/sizing.md's ring skew section is stale: run make ring-skew")
	page, err = os.ReadFile("../../../../../docs/scaling.md")
	require.NoError(t, err)
	assert.Equal(t, hpaSection, sectionOf(string(page), hpaBegin, hpaEnd), "docs/scaling.md's HPA simulation section is stale: run make ring-skew")
}
