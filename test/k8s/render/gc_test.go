package render

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// GCEnv resolves the base's GOMEMLIMIT as the kubelet would for a pod of
// the given size: the request, scaled with the limit.
func TestGCEnvFollowsThePodSize(t *testing.T) {
	shipped, err := GCEnv("Deployment", 0)
	require.NoError(t, err)
	small, err := GCEnv("Deployment", 512<<20)
	require.NoError(t, err)
	for _, env := range []map[string]string{shipped, small} {
		_, err := strconv.Atoi(env["GOGC"])
		require.NoError(t, err, "GOGC %q", env["GOGC"])
	}
	shippedLimit, err := strconv.ParseInt(shipped["GOMEMLIMIT"], 10, 64)
	require.NoError(t, err)
	smallLimit, err := strconv.ParseInt(small["GOMEMLIMIT"], 10, 64)
	require.NoError(t, err)
	assert.Greater(t, shippedLimit, int64(0))
	// As shipped, the kubelet writes the request itself.
	c, _, err := baseContainer("Deployment")
	require.NoError(t, err)
	assert.Equal(t, c.Resources.Requests.Memory().Value(), shippedLimit, "the shipped pod's GOMEMLIMIT is its memory request")
	podLimit, err := PodMemoryLimit("Deployment")
	require.NoError(t, err)
	scale := float64(512<<20) / float64(podLimit)
	assert.InDelta(t, float64(shippedLimit)*scale, float64(smallLimit), 1, "a pod resized to 512 MiB gets its GOMEMLIMIT in proportion")

	_, err = GCEnv("StatefulSet", 0)
	assert.Error(t, err)
}
