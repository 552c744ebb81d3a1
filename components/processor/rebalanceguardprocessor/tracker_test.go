package rebalanceguardprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestTrackerForgetsOnlyQuietTraces: a trace is forgotten once it has not
// been seen for the active window, not before; entries keep the time
// their trace was first seen.
func TestTrackerForgetsOnlyQuietTraces(t *testing.T) {
	const s = int64(time.Second)
	tr := newTracker(10, 10*time.Second)
	a, b := pcommon.TraceID{1}, pcommon.TraceID{2}
	tr.touch(a, 0)
	tr.touch(b, 5*s)
	e := tr.touch(a, 6*s)
	assert.Equal(t, int64(0), e.firstSeen)

	tr.expire(15 * s) // a seen 9s ago, b 10s ago: b is quiet, but a is older in first-seen order and shields it
	assert.Equal(t, 2, tr.len())
	tr.expire(16*s + 1) // both quiet
	assert.Zero(t, tr.len())

	tr.touch(a, 20*s)
	tr.expire(29 * s)
	var active []pcommon.TraceID
	tr.active(29*s, func(e *traceEntry) { active = append(active, e.id) })
	assert.Equal(t, []pcommon.TraceID{a}, active)
	assert.Zero(t, tr.takeEvicted())
}
