package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"slices"
	"time"
)

// maxReplacedRings bounds the rings remembered within moved_in_window. More
// changes than this inside one window is flapping; the guard then keeps
// every trace until the window after the forgotten ring has passed.
const maxReplacedRings = 32

// replacedRing is a ring the guard followed until replacedAt.
type replacedRing struct {
	ring       *hashRing
	self       int32 // index of Self in ring, -1 when not a member
	replacedAt int64 // unix nanos
}

// ringHistory remembers the rings replaced within moved_in_window, oldest
// first. A trace's earlier half may be on the gateway that ANY of them gave
// it to, not only the ring before the last change: a rolling update
// publishes a new gateway and takes an old one out within a second, and
// agents send a trace's spans across both changes.
type ringHistory struct {
	window        int64 // moved_in_window in nanos
	rings         []replacedRing
	overflowUntil int64 // while now is before this, treat every trace as moved in
}

func newRingHistory(window time.Duration) *ringHistory {
	return &ringHistory{window: int64(window)}
}

// add records that r, on which this gateway was at index self, was replaced at now.
func (h *ringHistory) add(r *hashRing, self int32, now int64) {
	h.expire(now)
	if len(h.rings) == maxReplacedRings {
		h.overflowUntil = max(h.overflowUntil, h.rings[0].replacedAt+h.window)
		h.rings = slices.Delete(h.rings, 0, 1)
	}
	h.rings = append(h.rings, replacedRing{ring: r, self: self, replacedAt: now})
}

// expire forgets the rings replaced longer than the window ago.
func (h *ringHistory) expire(now int64) {
	n := 0
	for n < len(h.rings) && now-h.rings[n].replacedAt >= h.window {
		n++
	}
	h.rings = slices.Delete(h.rings, 0, n)
}

// elsewhere reports whether a ring replaced within the window gave the
// trace (by its traceIDChecksum) to another gateway, or this gateway was
// not in it. Call expire first.
func (h *ringHistory) elsewhere(sum uint32, now int64) bool {
	if now < h.overflowUntil {
		return true
	}
	for i := range h.rings {
		r := &h.rings[i]
		if !r.ring.empty() && r.ring.ownerOfChecksum(sum) != r.self {
			return true
		}
	}
	return false
}
