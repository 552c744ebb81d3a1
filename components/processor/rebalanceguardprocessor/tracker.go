package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// traceEntry is what the guard remembers of a trace seen here.
type traceEntry struct {
	id        pcommon.TraceID
	firstSeen int64 // unix nanos: tail_sampling decides decision_wait after it
	lastSeen  int64 // unix nanos
	marked    bool  // a marker was injected, or its spans are being marked
	live      bool  // slot in use
}

// tracker remembers the traces seen within the active window, bounded in
// count: a fixed ring buffer of entries in first-seen order plus an index.
// When full, the oldest trace is forgotten (it is the least likely to still
// be in flight); forgetting one still inside the window is counted, as it
// means max_traces is too small for the traffic. Not safe for concurrent
// use: the guard holds its lock.
type tracker struct {
	entries []traceEntry
	index   map[pcommon.TraceID]int32
	window  int64 // active_window in nanos
	head    int   // oldest entry
	size    int
	// evictedActive counts traces forgotten inside the window, since the
	// last takeEvicted.
	evictedActive int64
}

func newTracker(max int, window time.Duration) *tracker {
	return &tracker{entries: make([]traceEntry, max), index: make(map[pcommon.TraceID]int32, max), window: int64(window)}
}

// touch records a span of trace id seen at now and returns its entry.
func (t *tracker) touch(id pcommon.TraceID, now int64) *traceEntry {
	if i, ok := t.index[id]; ok {
		e := &t.entries[i]
		e.lastSeen = now
		return e
	}
	if t.size == len(t.entries) {
		if e := &t.entries[t.head]; e.live && now-e.lastSeen < t.window {
			t.evictedActive++
		}
		t.evictOldest()
	}
	slot := (t.head + t.size) % len(t.entries)
	t.entries[slot] = traceEntry{id: id, firstSeen: now, lastSeen: now, live: true}
	t.index[id] = int32(slot)
	t.size++
	return &t.entries[slot]
}

func (t *tracker) evictOldest() {
	e := &t.entries[t.head]
	if e.live {
		delete(t.index, e.id)
		e.live = false
	}
	t.head = (t.head + 1) % len(t.entries)
	t.size--
}

// expire forgets, from the oldest on, traces not seen within the window.
// It stops at the first trace still active, so an old but busy trace
// shields younger idle ones until it goes quiet; the count bound still holds.
func (t *tracker) expire(now int64) {
	for t.size > 0 {
		e := &t.entries[t.head]
		if e.live && now-e.lastSeen < t.window {
			return
		}
		t.evictOldest()
	}
}

// active calls fn for every trace seen within the window.
func (t *tracker) active(now int64, fn func(*traceEntry)) {
	for k := 0; k < t.size; k++ {
		e := &t.entries[(t.head+k)%len(t.entries)]
		if e.live && now-e.lastSeen < t.window {
			fn(e)
		}
	}
}

// takeEvicted returns and resets the count of traces forgotten inside the window.
func (t *tracker) takeEvicted() int64 {
	n := t.evictedActive
	t.evictedActive = 0
	return n
}

func (t *tracker) len() int { return t.size }
