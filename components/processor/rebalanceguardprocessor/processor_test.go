package rebalanceguardprocessor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadata"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeMembership hands the guard gateway sets when the test says so.
type fakeMembership struct {
	initial  []string
	onChange func([]string)
}

func (f *fakeMembership) start(_ context.Context, cb func([]string)) error {
	f.onChange = cb
	if f.initial != nil {
		cb(f.initial)
	}
	return nil
}
func (*fakeMembership) shutdown(context.Context) error { return nil }

const (
	gwA = "10.0.0.1:4317"
	gwB = "10.0.0.2:4317"
	gwC = "10.0.0.3:4317"
)

type fixture struct {
	g     *guard
	sink  *consumertest.TracesSink
	clock *fakeClock
	src   *fakeMembership
	cfg   *Config
}

func newFixture(t *testing.T, self string, initial []string, mutate ...func(*Config)) *fixture {
	t.Helper()
	return newFixtureWith(t, processortest.NewNopSettings(metadata.Type), self, initial, mutate...)
}

// newFixtureWith is newFixture with the given settings (telemetry, logger).
func newFixtureWith(t *testing.T, set processor.Settings, self string, initial []string, mutate ...func(*Config)) *fixture {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Self = self
	cfg.Resolver.Static = &StaticResolver{Hostnames: initial}
	cfg.DecisionWait = 10 * time.Second // the gateway profile's default
	// Agents switch at most 1s after this gateway sees a change; clocks
	// agree within 1s: spans that started before a change + 2s count as in
	// flight at it.
	cfg.AgentLag, cfg.ClockSkew = time.Second, time.Second
	for _, m := range mutate {
		m(cfg)
	}
	f := &fixture{sink: new(consumertest.TracesSink), clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, src: &fakeMembership{initial: initial}, cfg: cfg}
	g, err := newGuard(set, cfg, f.sink, f.src, f.clock)
	require.NoError(t, err)
	f.g = g
	require.NoError(t, g.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return f
}

// traceOwnedBy finds a trace ID that ring(members) gives to owner and, when
// other is set, that ring(otherMembers) gives to other.
func traceOwnedBy(t *testing.T, members []string, owner string, otherMembers []string, other string) pcommon.TraceID {
	t.Helper()
	return nthTraceOwnedBy(t, 0, members, owner, otherMembers, other)
}

func nthTraceOwnedBy(t *testing.T, nth int, members []string, owner string, otherMembers []string, other string) pcommon.TraceID {
	t.Helper()
	placements := []placement{{members, owner}}
	if otherMembers != nil {
		placements = append(placements, placement{otherMembers, other})
	}
	return nthTracePlaced(t, nth, placements...)
}

// placement is a gateway set and the gateway its ring must give a trace to.
type placement struct {
	members []string
	owner   string
}

// nthTracePlaced finds the nth trace ID that every placement's ring gives
// to its owner.
func nthTracePlaced(t *testing.T, nth int, placements ...placement) pcommon.TraceID {
	t.Helper()
	rings := make([]*hashRing, len(placements))
	for i, p := range placements {
		rings[i] = newHashRing(p.members)
	}
	for i := 0; i < 1_000_000; i++ {
		id := pcommon.TraceID{byte(i >> 16), byte(i >> 8), byte(i), 0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
		placed := true
		for j, r := range rings {
			placed = placed && r.owner(id) == placements[j].owner
		}
		if placed {
			if nth == 0 {
				return id
			}
			nth--
		}
	}
	t.Fatalf("no trace ID placed as %v", placements)
	return pcommon.TraceID{}
}

// spansOf makes n spans of trace id that started at start and end now.
func spansOf(id pcommon.TraceID, n int, start, now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := spans.AppendEmpty()
		sp.SetTraceID(id)
		sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	}
	return td
}

// keptSpans counts, in everything the next consumer received for a trace,
// spans with the keep attribute, and markers among them.
func keptSpans(f *fixture, id pcommon.TraceID) (kept, markers, total int) {
	for _, td := range f.sink.AllTraces() {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					sp := spans.At(k)
					if sp.TraceID() != id {
						continue
					}
					total++
					if v, ok := sp.Attributes().Get(f.cfg.KeepAttribute); ok && v.Bool() {
						kept++
					}
					if v, ok := sp.Attributes().Get(f.cfg.MarkerAttribute); ok && v.Bool() {
						markers++
					}
				}
			}
		}
	}
	return
}

// consume sends n spans of trace id that started a moment ago.
func consume(t *testing.T, f *fixture, id pcommon.TraceID, n int) {
	t.Helper()
	consumeStarted(t, f, id, n, f.clock.Now().Add(-10*time.Millisecond))
}

// consumeStarted sends n spans of trace id that started at start.
func consumeStarted(t *testing.T, f *fixture, id pcommon.TraceID, n int, start time.Time) {
	t.Helper()
	require.NoError(t, f.g.ConsumeTraces(context.Background(), spansOf(id, n, start, f.clock.Now())))
}

func TestOwnedTracesPassUnmarked(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, members)
	f.clock.advance(time.Minute) // past the startup (join) window
	id := traceOwnedBy(t, members, gwA, nil, "")
	consume(t, f, id, 5)
	kept, markers, total := keptSpans(f, id)
	assert.Equal(t, 5, total)
	assert.Zero(t, kept)
	assert.Zero(t, markers)
}

// TestSpansNoRingRoutedHereAreSampledByThePolicies: while the set is
// steady, a span of a trace another gateway owns was not sent by an agent
// (every agent routes by the ring the guard follows) but by a sender that
// does not route by trace ID: an SDK or a collector pointed at one
// gateway. Marking it would keep (N-1)/N of that sender's traces whatever
// the policies say; it is counted, not marked.
func TestSpansNoRingRoutedHereAreSampledByThePolicies(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, members)
	f.clock.advance(time.Minute)
	id := traceOwnedBy(t, members, gwB, nil, "")
	consume(t, f, id, 3)
	kept, markers, total := keptSpans(f, id)
	assert.Equal(t, 3, total)
	assert.Zero(t, kept, "no agent sent this here: the policies decide it")
	assert.Zero(t, markers)
}

// TestSpansALaggingAgentSendsAreMarked: after a change, an agent that has
// not switched yet still sends here traces of the ring it follows. Their
// spans sent before it switched (started before the change + agent_lag +
// clock_skew) are marked: the rest of the trace goes to its owner. Which
// ring the agent follows is not known here: with the dns resolver it may
// be a set between two this gateway saw (it polls at other moments), so a
// trace no ring this guard saw gave here counts too. Traces begun after
// that, and everything once moved_in_window has passed, are the policies'.
func TestSpansALaggingAgentSendsAreMarked(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC} // scale-out: gwC takes traces from gwA
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	change := f.clock.Now()
	f.src.onChange(after)
	f.clock.advance(5 * time.Second)

	lagging := nthTraceOwnedBy(t, 0, before, gwA, after, gwC)
	late := nthTraceOwnedBy(t, 1, before, gwA, after, gwC)
	unseenRing := nthTraceOwnedBy(t, 0, before, gwB, after, gwB)
	consumeStarted(t, f, lagging, 2, change.Add(1900*time.Millisecond))
	consumeStarted(t, f, late, 2, change.Add(2100*time.Millisecond))
	consumeStarted(t, f, unseenRing, 2, change.Add(-time.Second))
	kept, _, _ := keptSpans(f, lagging)
	assert.Equal(t, 2, kept, "sent by an agent still on the replaced ring: keep this half")
	kept, _, _ = keptSpans(f, late)
	assert.Zero(t, kept, "started after every agent switched: no agent sent it here")
	kept, _, _ = keptSpans(f, unseenRing)
	assert.Equal(t, 2, kept, "in flight at the change: an agent on a ring this guard never saw may have sent it")

	// After moved_in_window the set is steady again.
	f.clock.advance(f.cfg.MovedInWindow)
	old := nthTraceOwnedBy(t, 2, before, gwA, after, gwC)
	consumeStarted(t, f, old, 1, change.Add(-time.Second))
	kept, _, _ = keptSpans(f, old)
	assert.Zero(t, kept)
}

// TestAGuardThatSkippedASetKeepsWhatItsAgentsSent reproduces what the live
// churn suite found on the dns resolver (node DNS caches, a rolling
// restart): a gateway's guard went from {A, B, C} straight to {D, E, F},
// while an agent followed {A, B, D}, between the two, and sent this
// gateway (B) a trace that {A, B, D} gives to B and {A, B, C} to C. Only
// marking by the change, not by the rings this guard saw, keeps that half.
func TestAGuardThatSkippedASetKeepsWhatItsAgentsSent(t *testing.T) {
	const gwD, gwE, gwF = "10.0.0.4:4317", "10.0.0.5:4317", "10.0.0.6:4317"
	seen := []string{gwA, gwB, gwC}
	skipped := []string{gwA, gwB, gwD}
	now := []string{gwD, gwE, gwF}
	f := newFixture(t, gwB, seen)
	f.clock.advance(time.Minute)
	change := f.clock.Now()
	f.src.onChange(now)
	f.clock.advance(time.Second)
	id := nthTracePlaced(t, 0, placement{seen, gwC}, placement{skipped, gwB})
	consumeStarted(t, f, id, 3, change.Add(500*time.Millisecond))
	kept, _, _ := keptSpans(f, id)
	assert.Equal(t, 3, kept)
}

// TestGuardLearningAChangeAfterTheAgentsMarksWhatTheySentAhead: with the
// dns resolver the agents may see a change before this gateway does, and
// send it traces its stale ring gives to another gateway. Those are not
// marked on arrival (no ring this guard knows gave them here); when the
// guard catches up, the ring gives them here and the earlier half is on
// the old owner: each still undecided gets a marker.
func TestGuardLearningAChangeAfterTheAgentsMarksWhatTheySentAhead(t *testing.T) {
	before := []string{gwA, gwB, gwC}
	after := []string{gwA, gwB} // scale-in: gwC's traces move to gwA and gwB
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	ahead := traceOwnedBy(t, before, gwC, after, gwA)
	consume(t, f, ahead, 2)
	kept, _, _ := keptSpans(f, ahead)
	require.Zero(t, kept)

	f.clock.advance(3 * time.Second)
	f.src.onChange(after)
	kept, markers, _ := keptSpans(f, ahead)
	assert.Equal(t, 1, markers, "a marker keeps the half here")
	assert.Equal(t, 1, kept)
}

// TestGatewayStartingInTheSetMarksTracesOwnedElsewhereBegunBeforeItsStart:
// a gateway in the first set it learns (a static list) cannot know where
// the agents routed before it started: spans of traces owned elsewhere
// begun before its start + agent_lag + clock_skew are marked, later ones
// are not.
func TestGatewayStartingInTheSetMarksTracesOwnedElsewhereBegunBeforeItsStart(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, members)
	begun := f.clock.Now()
	f.clock.advance(5 * time.Second)
	early := nthTraceOwnedBy(t, 0, members, gwB, nil, "")
	late := nthTraceOwnedBy(t, 1, members, gwB, nil, "")
	consumeStarted(t, f, early, 1, begun.Add(1900*time.Millisecond))
	consumeStarted(t, f, late, 1, begun.Add(2100*time.Millisecond))
	kept, _, _ := keptSpans(f, early)
	assert.Equal(t, 1, kept)
	kept, _, _ = keptSpans(f, late)
	assert.Zero(t, kept)
}

func TestActiveTracesMovingOutGetAMarker(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	moving := traceOwnedBy(t, before, gwA, after, gwC)
	staying := traceOwnedBy(t, before, gwA, after, gwA)
	consume(t, f, moving, 2)
	consume(t, f, staying, 2)

	f.clock.advance(time.Second)
	f.src.onChange(after) // scale-out: gwC joins
	kept, markers, total := keptSpans(f, moving)
	assert.Equal(t, 1, markers, "one marker for the trace that moved to gwC")
	assert.Equal(t, 3, total)
	assert.Equal(t, 1, kept)
	_, markers, _ = keptSpans(f, staying)
	assert.Zero(t, markers, "a trace that stays here needs no marker")

	// Later spans of the moved trace (a lagging agent) are kept too.
	consume(t, f, moving, 1)
	kept, _, _ = keptSpans(f, moving)
	assert.Equal(t, 2, kept)
}

// TestMarkersAreNeverRoots: a marker carries a parent span ID, so that
// tail_sampling never takes it for the trace's root (with
// decision_wait_after_root_received it would decide the trace early).
func TestMarkersAreNeverRoots(t *testing.T) {
	td := buildMarkers([]pcommon.TraceID{{1}, {2}}, reasonMovedOut, "keep", "marker", time.Now())
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	require.Equal(t, 2, spans.Len())
	for i := 0; i < spans.Len(); i++ {
		assert.False(t, spans.At(i).ParentSpanID().IsEmpty(), "marker %d is a root span", i)
		assert.NotEqual(t, spans.At(i).SpanID(), spans.At(i).ParentSpanID())
	}
}

func TestDecidedTracesGetNoMarkerOnChange(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	id := traceOwnedBy(t, before, gwA, after, gwC)
	consume(t, f, id, 2)
	f.clock.advance(f.cfg.DecisionWait + 2*time.Second) // decided here, still active
	consume(t, f, id, 1)                                // a late span
	f.src.onChange(after)
	_, markers, _ := keptSpans(f, id)
	assert.Zero(t, markers, "tail_sampling decided it already: a marker changes nothing")
	require.NoError(t, f.g.Shutdown(context.Background()))
	_, markers, _ = keptSpans(f, id)
	assert.Zero(t, markers, "nor at shutdown")
}

func TestInactiveTracesAreNotMarkedOnChange(t *testing.T) {
	before := []string{gwA, gwB}
	after := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	id := traceOwnedBy(t, before, gwA, after, gwC)
	consume(t, f, id, 2)
	f.clock.advance(f.cfg.activeWindow() + time.Second) // long decided
	f.src.onChange(after)
	_, markers, _ := keptSpans(f, id)
	assert.Zero(t, markers)
}

func TestTracesMovingInAreMarkedWithinTheWindow(t *testing.T) {
	before := []string{gwA, gwB, gwC}
	after := []string{gwA, gwB} // scale-in: gwC leaves, its traces move
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	change := f.clock.Now()
	f.src.onChange(after)
	movedIn := traceOwnedBy(t, before, gwC, after, gwA)
	always := traceOwnedBy(t, before, gwA, after, gwA)

	f.clock.advance(5 * time.Second)
	consumeStarted(t, f, movedIn, 2, change.Add(-3*time.Second)) // in flight at the change
	consumeStarted(t, f, always, 2, change.Add(-3*time.Second))
	kept, _, _ := keptSpans(f, movedIn)
	assert.Equal(t, 2, kept, "its first half may be on gwC: keep this half")
	kept, _, _ = keptSpans(f, always)
	assert.Zero(t, kept)

	// After the window, traces that hash here are ordinary again.
	f.clock.advance(f.cfg.MovedInWindow)
	fresh := nthTraceOwnedBy(t, 1, before, gwC, after, gwA)
	consumeStarted(t, f, fresh, 1, change.Add(-3*time.Second))
	kept, _, _ = keptSpans(f, fresh)
	assert.Zero(t, kept)
}

func TestTracesBegunAfterTheAgentsSwitchedAreNotMarked(t *testing.T) {
	// A trace that moved here can only have a half elsewhere if a span of
	// it was sent before the agents switched, so its root started before
	// the change + agent_lag + clock_skew (2s here).
	before := []string{gwA, gwB, gwC}
	after := []string{gwA, gwB}
	f := newFixture(t, gwA, before)
	f.clock.advance(time.Minute)
	change := f.clock.Now()
	f.src.onChange(after)
	f.clock.advance(5 * time.Second)

	early := nthTraceOwnedBy(t, 0, before, gwC, after, gwA)
	late := nthTraceOwnedBy(t, 1, before, gwC, after, gwA)
	consumeStarted(t, f, early, 1, change.Add(1900*time.Millisecond))
	consumeStarted(t, f, late, 1, change.Add(2100*time.Millisecond))
	kept, _, _ := keptSpans(f, early)
	assert.Equal(t, 1, kept, "started before the agents can have switched")
	kept, _, _ = keptSpans(f, late)
	assert.Zero(t, kept, "started after every agent switched: whole here")

	// One span started early enough (the root, typically sent last) keeps
	// the trace, and every span of it from then on carries the attribute.
	mixed := nthTraceOwnedBy(t, 2, before, gwC, after, gwA)
	consumeStarted(t, f, mixed, 1, change.Add(3*time.Second))
	consumeStarted(t, f, mixed, 1, change.Add(-time.Second))
	consumeStarted(t, f, mixed, 1, change.Add(4*time.Second))
	kept, _, total := keptSpans(f, mixed)
	assert.Equal(t, 3, total)
	assert.Equal(t, 2, kept, "the root and what follows it")
}

func TestJoiningGatewayMarksTracesItTakesOver(t *testing.T) {
	// gwC starts before it is ready: the set it first learns lacks it; once
	// ready it is published, and agents and gateways move traces to it.
	before := []string{gwA, gwB}
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwC, before)
	f.clock.advance(5 * time.Second)
	join := f.clock.Now()
	f.src.onChange(members)
	f.clock.advance(3 * time.Second)
	inFlight := nthTraceOwnedBy(t, 0, before, gwA, members, gwC)
	fresh := nthTraceOwnedBy(t, 1, before, gwA, members, gwC)
	consumeStarted(t, f, inFlight, 1, join.Add(-time.Second))
	consumeStarted(t, f, fresh, 1, join.Add(3*time.Second))
	kept, _, _ := keptSpans(f, inFlight)
	assert.Equal(t, 1, kept, "its earlier half is on gwA (which marks it moved-out): keep this half")
	kept, _, _ = keptSpans(f, fresh)
	assert.Zero(t, kept, "begun after the agents switched to gwC: all of it is here")
}

func TestGatewayStartingInTheSetMarksOnlyTracesBegunBeforeItsStart(t *testing.T) {
	// A static set (or a restart in place): the gateway is in the first set
	// it learns. Traces begun before it started may have spans elsewhere or
	// lost; traces begun after are whole here. The first set is no change:
	// nothing is marked for traces the ring gives here.
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwC, members)
	begun := f.clock.Now()
	f.clock.advance(5 * time.Second)
	before := nthTraceOwnedBy(t, 0, members, gwC, nil, "")
	after := nthTraceOwnedBy(t, 1, members, gwC, nil, "")
	consumeStarted(t, f, before, 1, begun.Add(-time.Second))
	consumeStarted(t, f, after, 1, begun.Add(100*time.Millisecond)) // no lag: nothing switched
	kept, _, _ := keptSpans(f, before)
	assert.Equal(t, 1, kept)
	kept, _, _ = keptSpans(f, after)
	assert.Zero(t, kept)
}

func TestShutdownMarksActiveTraces(t *testing.T) {
	members := []string{gwA, gwB}
	f := newFixture(t, gwA, members)
	f.clock.advance(time.Minute)
	active := traceOwnedBy(t, members, gwA, nil, "")
	old := pcommon.TraceID{9, 9, 9}
	consume(t, f, old, 1)
	f.clock.advance(f.cfg.activeWindow() + time.Second)
	consume(t, f, active, 2)
	require.NoError(t, f.g.Shutdown(context.Background()))
	_, markers, _ := keptSpans(f, active)
	assert.Equal(t, 1, markers, "markers reach the next consumer before Shutdown returns")
	_, markers, _ = keptSpans(f, old)
	assert.Zero(t, markers, "decided long ago: nothing to save")
}

func TestTrackedTracesAreBounded(t *testing.T) {
	members := []string{gwA}
	f := newFixture(t, gwA, members, func(c *Config) { c.MaxTraces = 100 })
	for i := range 1000 {
		consume(t, f, pcommon.TraceID{byte(i >> 8), byte(i), 1}, 1)
	}
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	assert.Equal(t, 100, f.g.tracker.len())
	assert.Len(t, f.g.tracker.index, 100)
	assert.Equal(t, int64(900), f.g.tracker.takeEvicted(), "every trace forgotten was still in flight")
}

func TestEmptyRingMarksNothing(t *testing.T) {
	f := newFixture(t, gwA, nil) // resolver has not answered yet
	id := pcommon.TraceID{1, 2, 3}
	consume(t, f, id, 2)
	kept, _, total := keptSpans(f, id)
	assert.Equal(t, 2, total)
	assert.Zero(t, kept)
}

func TestDisabledPassesThrough(t *testing.T) {
	members := []string{gwA, gwB}
	f := newFixture(t, gwA, members, func(c *Config) { c.Enabled = false })
	id := traceOwnedBy(t, members, gwB, nil, "")
	consume(t, f, id, 2)
	kept, _, total := keptSpans(f, id)
	assert.Equal(t, 2, total)
	assert.Zero(t, kept)
}

func TestUnchangedMembershipIsNotAChange(t *testing.T) {
	members := []string{gwA, gwB}
	f := newFixture(t, gwA, members)
	f.clock.advance(time.Minute)
	f.src.onChange([]string{gwB, gwA}) // same set, other order
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	for _, r := range f.g.history.rings {
		assert.NotEqual(t, f.clock.Now().UnixNano(), r.replacedAt, "reordering must not open a moved-in window")
	}
}

func TestTracesMovingInThroughQuickSuccessiveChangesAreMarked(t *testing.T) {
	// Two changes within a second, this gateway (gwB) a member throughout:
	// gwC leaves, moving a trace here, and gwD joins, leaving it here. The
	// ring replaced by the second change gives the trace here too; only the
	// one replaced by the first knows its earlier half is on gwC.
	const gwD = "10.0.0.4:4317"
	start := []string{gwA, gwB, gwC}
	shrunk := []string{gwA, gwB}
	grown := []string{gwA, gwB, gwD}
	f := newFixture(t, gwB, start)
	f.clock.advance(time.Minute)
	first := f.clock.Now()
	f.src.onChange(shrunk)
	f.clock.advance(300 * time.Millisecond)
	f.src.onChange(grown)

	id := nthTracePlaced(t, 0, placement{start, gwC}, placement{shrunk, gwB}, placement{grown, gwB})
	f.clock.advance(2 * time.Second)
	consumeStarted(t, f, id, 2, first.Add(-time.Second))
	kept, _, _ := keptSpans(f, id)
	assert.Equal(t, 2, kept, "its earlier half is on gwC: keep this half")
}

func TestEachReplacedRingCountsForItsOwnWindow(t *testing.T) {
	// Two changes 20s apart, this gateway (gwB) a member throughout: 15s
	// after the second, a ring replaced 35s ago no longer matters, the one
	// replaced 15s ago still does.
	const gwD = "10.0.0.4:4317"
	start := []string{gwA, gwB, gwC}
	shrunk := []string{gwA, gwB}
	grown := []string{gwB, gwD}
	f := newFixture(t, gwB, start)
	f.clock.advance(time.Minute)
	first := f.clock.Now()
	f.src.onChange(shrunk)
	f.clock.advance(20 * time.Second)
	second := f.clock.Now()
	f.src.onChange(grown)
	f.clock.advance(15 * time.Second)

	longAgo := nthTracePlaced(t, 0, placement{start, gwC}, placement{shrunk, gwB}, placement{grown, gwB})
	recent := nthTracePlaced(t, 0, placement{shrunk, gwA}, placement{grown, gwB})
	consumeStarted(t, f, longAgo, 1, first.Add(-time.Second))
	consumeStarted(t, f, recent, 1, second.Add(-time.Second))
	kept, _, _ := keptSpans(f, longAgo)
	assert.Zero(t, kept, "moved here 35s ago, beyond moved_in_window")
	kept, _, _ = keptSpans(f, recent)
	assert.Equal(t, 1, kept, "moved here 15s ago: its earlier half may be on gwA")
}

func TestFlappingBeyondTheHistoryBoundKeepsEverything(t *testing.T) {
	// More changes within moved_in_window than rings remembered: the guard
	// cannot tell where a trace was, so it keeps every trace until the
	// window after the forgotten ring has passed.
	small := []string{gwA, gwB}
	big := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, small)
	f.clock.advance(time.Minute)
	for i := range maxReplacedRings + 1 {
		f.clock.advance(100 * time.Millisecond)
		f.src.onChange([][]string{big, small}[i%2])
	}
	always := traceOwnedBy(t, small, gwA, big, gwA) // here in every ring
	consume(t, f, always, 1)
	kept, _, _ := keptSpans(f, always)
	assert.Equal(t, 1, kept)

	f.clock.advance(f.cfg.MovedInWindow)
	later := nthTraceOwnedBy(t, 1, small, gwA, big, gwA)
	consume(t, f, later, 1)
	kept, _, _ = keptSpans(f, later)
	assert.Zero(t, kept, "the window has passed: ordinary again")
}

// TestSelfFindsItselfWrittenAnyWay: the profiles bracket the pod IP so the
// same line serves IPv4 and IPv6 ("[${env:MY_POD_IP}]:4317"); the
// resolvers write IPv4 bare and IPv6 bracketed. Either way the guard finds
// itself, and traces it owns pass unmarked.
func TestSelfFindsItselfWrittenAnyWay(t *testing.T) {
	for _, c := range []struct{ self, listed, other string }{
		{"[10.0.0.1]:4317", "10.0.0.1:4317", "10.0.0.2:4317"},
		{"10.0.0.1:4317", "10.0.0.1:4317", "10.0.0.2:4317"},
		{"[fd00::1]:4317", "[fd00::1]:4317", "[fd00::2]:4317"},
	} {
		members := []string{c.listed, c.other}
		f := newFixture(t, c.self, members)
		f.clock.advance(time.Minute)
		f.g.mu.Lock()
		self := f.g.self
		f.g.mu.Unlock()
		assert.GreaterOrEqual(t, self, int32(0), "self %s not found among %v", c.self, members)
		id := traceOwnedBy(t, members, c.listed, nil, "")
		consume(t, f, id, 1)
		kept, _, _ := keptSpans(f, id)
		assert.Zero(t, kept, "self %s: a trace it owns was marked", c.self)
	}
}
