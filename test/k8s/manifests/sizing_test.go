package manifests

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// Sizing assumptions of the shipped defaults (docs/sizing.md): request
// traces of about 20 spans, and the HPA's CPU target.
const (
	designSpansPerTrace = 20
	designCPUShare      = 0.7
)

func intAt(t *testing.T, doc any, keys ...string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(fmt.Sprint(profile.Get(doc, keys...)), 64)
	require.NoError(t, err, "%v", keys)
	return v
}

// TestShippedDefaultsFitTheGatewayPod recomputes docs/sizing.md's method
// for the shipped gateway pod (its CPU request and memory limit) and the
// gateway profile's defaults: the trace buffer must hold what the pod's CPU
// can take at the HPA target (else tail_sampling evicts undecided traces
// before the gateway is busy), and everything the defaults let the
// gateway hold must stay under memory_limiter's soft limit (else it
// refuses data before its buffers are full).
func TestShippedDefaultsFitTheGatewayPod(t *testing.T) {
	consts, err := harness.SizingConstants()
	require.NoError(t, err)
	m := load(t)
	c := m.gateway.Spec.Template.Spec.Containers[0]
	prof, err := profile.Effective("gateway", containerEnv(t, c))
	require.NoError(t, err)

	cpus := c.Resources.Requests.Cpu().AsApproximateFloat64()
	memLimit := c.Resources.Limits.Memory().AsApproximateFloat64()
	require.Positive(t, cpus, "gateway CPU request")
	require.Positive(t, memLimit, "gateway memory limit")

	ts := profile.Get(prof, "processors", "tail_sampling")
	decisionWait, err := time.ParseDuration(fmt.Sprint(profile.Get(ts, "decision_wait")))
	require.NoError(t, err)
	numTraces := intAt(t, ts, "num_traces")
	caches := intAt(t, ts, "decision_cache", "sampled_cache_size") + intAt(t, ts, "decision_cache", "non_sampled_cache_size")
	expected := intAt(t, ts, "expected_new_traces_per_sec")
	ml := profile.Get(prof, "processors", "memory_limiter")
	soft := (intAt(t, ml, "limit_percentage") - intAt(t, ml, "spike_limit_percentage")) / 100

	// CPU: the traces/s one pod takes at the HPA target.
	spansPerSec := cpus * designCPUShare / (consts.CPUSecondsPer10kSpans / 10_000)
	tracesPerSec := spansPerSec / designSpansPerTrace
	needed := tracesPerSec * (decisionWait + time.Second).Seconds() * 1.5
	t.Logf("one gateway pod (%.1f CPU at %.0f%%): %.0f spans/s, %.0f traces/s; num_traces needed %.0f, shipped %.0f",
		cpus, 100*designCPUShare, spansPerSec, tracesPerSec, needed, numTraces)
	assert.GreaterOrEqual(t, numTraces, needed, "num_traces is smaller than the traces one pod's CPU takes within decision_wait (x1.5): undecided traces would be evicted")
	assert.InDelta(t, tracesPerSec, expected, tracesPerSec*0.5, "expected_new_traces_per_sec should be the pod's rate")

	// Memory: the live heap with every buffer full, at most half of
	// memory_limiter's soft limit (the heap grows to twice the live heap
	// between collections, and the limiter counts it all).
	live := consts.IdleHeap +
		numTraces*(consts.IdleHeapPerNumTrace+designSpansPerTrace*consts.HeapPerBufferedSpan) +
		caches*consts.DecisionCacheEntry
	budget := soft * memLimit / 2
	t.Logf("live heap with every buffer full: %.0f MiB; budget %.0f MiB (half of memory_limiter's soft limit, %.0f%% of %.0f MiB)",
		live/(1<<20), budget/(1<<20), 100*soft, memLimit/(1<<20))
	assert.LessOrEqual(t, live, budget, "the defaults let a gateway hold more than memory_limiter allows: it would refuse data before its buffers are full")
	// Upstream's advice for the decision caches: at least 10 x num_traces.
	assert.GreaterOrEqual(t, caches/2, 10*numTraces, "decision caches below 10 x num_traces")
}
