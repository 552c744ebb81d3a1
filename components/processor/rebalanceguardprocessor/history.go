package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"math"
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
	// unknown: this gateway started at replacedAt already in the ring; where
	// the traces it receives were before is unknown.
	unknown bool
}

// ringHistory remembers the rings replaced within moved_in_window, oldest
// first. A trace's earlier half may be on the gateway that ANY of them gave
// it to, not only the ring before the last change: a rolling update
// publishes a new gateway and takes an old one out within a second, and
// agents send a trace's spans across both changes.
//
// A trace moved by a change can only have a half elsewhere if one of its
// spans reached the old owner, that is, was sent before the agents
// switched: before replacedAt plus the agents' lag. Such a span, and every
// ancestor of it (the root included), started before that moment, give or
// take the clocks' skew. So the history answers, for a trace, the start
// time before which its spans arriving here count as moved in.
type ringHistory struct {
	window        int64 // moved_in_window in nanos
	margin        int64 // agent_lag + clock_skew in nanos
	rings         []replacedRing
	overflowUntil int64 // while now is before this, treat every trace as moved in
}

func newRingHistory(window, margin time.Duration) *ringHistory {
	return &ringHistory{window: int64(window), margin: int64(margin)}
}

// add records that r, on which this gateway was at index self, was replaced at now.
func (h *ringHistory) add(r *hashRing, self int32, now int64) {
	h.push(replacedRing{ring: r, self: self, replacedAt: now})
}

// addStart records that this gateway started at now already in the ring.
func (h *ringHistory) addStart(now int64) {
	h.push(replacedRing{replacedAt: now, unknown: true})
}

func (h *ringHistory) push(r replacedRing) {
	h.expire(r.replacedAt)
	if len(h.rings) == maxReplacedRings {
		h.overflowUntil = max(h.overflowUntil, h.rings[0].replacedAt+h.window)
		h.rings = slices.Delete(h.rings, 0, 1)
	}
	h.rings = append(h.rings, r)
}

// expire forgets the rings replaced longer than the window ago.
func (h *ringHistory) expire(now int64) {
	n := 0
	for n < len(h.rings) && now-h.rings[n].replacedAt >= h.window {
		n++
	}
	h.rings = slices.Delete(h.rings, 0, n)
}

// movedInBefore returns the start time (unix nanos) before which a span of
// the trace (by its traceIDChecksum) counts as moved in: the latest
// replacedAt + margin over the rings replaced within the window that gave
// the trace to another gateway (or that this gateway was not in), and this
// gateway's start when it started in the ring. 0 when none did; the
// largest time while flapping. Call expire first.
func (h *ringHistory) movedInBefore(sum uint32, now int64) int64 {
	if now < h.overflowUntil {
		return math.MaxInt64
	}
	var before int64
	for i := range h.rings {
		r := &h.rings[i]
		switch {
		case r.unknown:
			// Traces begun before this gateway started. No margin: no agent
			// switched anything, and traffic that starts right after a
			// gateway (a fresh deployment) must not all count as moved in.
			before = max(before, r.replacedAt)
		case !r.ring.empty() && r.ring.ownerOfChecksum(sum) != r.self:
			before = max(before, r.replacedAt+h.margin)
		}
	}
	return before
}

// changedBefore is, for a trace the current ring gives to another
// gateway, the start time (unix nanos) before which its spans arriving
// here count as sent by an agent that has not switched yet: the latest
// replacedAt + margin over the rings replaced within the window, and this
// gateway's start + margin when it started in the ring (where the agents
// routed before is unknown). Any replaced ring counts, not only those that
// gave the trace here: a lagging agent may follow a set this gateway never
// saw (with the dns resolver each party polls at its own moments and skips
// the sets in between), so which gateway its ring gives the trace to is
// unknown here. 0 when the set has not changed within the window: then no
// agent routes by another ring, and a span owned elsewhere came from a
// sender that does not route by trace ID (an SDK or collector pointed at
// a gateway), whose traces the policies decide like any other. The
// largest time while flapping. Call expire first.
func (h *ringHistory) changedBefore(now int64) int64 {
	if now < h.overflowUntil {
		return math.MaxInt64
	}
	var before int64
	for i := range h.rings {
		before = max(before, h.rings[i].replacedAt+h.margin)
	}
	return before
}
