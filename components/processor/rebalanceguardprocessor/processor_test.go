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
	cfg := createDefaultConfig().(*Config)
	cfg.Self = self
	cfg.Resolver.Static = &StaticResolver{Hostnames: initial}
	cfg.DecisionWait = 10 * time.Second // the gateway profile's default
	for _, m := range mutate {
		m(cfg)
	}
	f := &fixture{sink: new(consumertest.TracesSink), clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, src: &fakeMembership{initial: initial}, cfg: cfg}
	g, err := newGuard(processortest.NewNopSettings(metadata.Type), cfg, f.sink, f.src, f.clock)
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

func spansOf(id pcommon.TraceID, n int) ptrace.Traces {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := spans.AppendEmpty()
		sp.SetTraceID(id)
		sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
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

func consume(t *testing.T, f *fixture, id pcommon.TraceID, n int) {
	t.Helper()
	require.NoError(t, f.g.ConsumeTraces(context.Background(), spansOf(id, n)))
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

func TestSpansOfTracesOwnedElsewhereAreMarked(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwA, members)
	f.clock.advance(time.Minute)
	id := traceOwnedBy(t, members, gwB, nil, "")
	consume(t, f, id, 3)
	kept, markers, _ := keptSpans(f, id)
	assert.Equal(t, 3, kept, "an agent still routing by an old ring: keep this half")
	assert.Zero(t, markers)
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
	f.src.onChange(after)
	movedIn := traceOwnedBy(t, before, gwC, after, gwA)
	always := traceOwnedBy(t, before, gwA, after, gwA)

	f.clock.advance(5 * time.Second)
	consume(t, f, movedIn, 2)
	consume(t, f, always, 2)
	kept, _, _ := keptSpans(f, movedIn)
	assert.Equal(t, 2, kept, "its first half may be on gwC: keep this half")
	kept, _, _ = keptSpans(f, always)
	assert.Zero(t, kept)

	// After the window, new traces that hash here are ordinary again.
	f.clock.advance(f.cfg.MovedInWindow)
	fresh := nthTraceOwnedBy(t, 1, before, gwC, after, gwA)
	consume(t, f, fresh, 1)
	kept, _, _ = keptSpans(f, fresh)
	assert.Zero(t, kept)
}

func TestJoiningGatewayMarksTracesItTakesOver(t *testing.T) {
	// gwC starts before it is ready: the set it first learns lacks it; once
	// ready it is published, and agents and gateways move traces to it.
	before := []string{gwA, gwB}
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwC, before)
	f.clock.advance(5 * time.Second)
	f.src.onChange(members)
	takenOver := traceOwnedBy(t, before, gwA, members, gwC)
	consume(t, f, takenOver, 1)
	kept, _, _ := keptSpans(f, takenOver)
	assert.Equal(t, 1, kept, "its earlier half is on gwA, which marks it moved-out")
}

func TestFirstMembershipIsNotAChange(t *testing.T) {
	members := []string{gwA, gwB, gwC}
	f := newFixture(t, gwC, members) // a static set: the same everywhere from the start
	id := traceOwnedBy(t, []string{gwA, gwB}, gwA, members, gwC)
	consume(t, f, id, 1)
	kept, _, _ := keptSpans(f, id)
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
	replaced := len(f.g.history.rings)
	f.g.mu.Unlock()
	assert.Zero(t, replaced, "reordering must not open a moved-in window")
}

func TestTracesMovingInThroughQuickSuccessiveChangesAreMarked(t *testing.T) {
	// A rolling update publishes a new gateway and, a moment later, takes an
	// old one out: two changes within a second. A trace that an old ring
	// gave to gwA and both newer rings give here (gwD) has its earlier half
	// on gwA, however late its spans arrive here within the window.
	const gwD = "10.0.0.4:4317"
	start := []string{gwA, gwB, gwC}
	joined := []string{gwA, gwB, gwC, gwD}
	rolled := []string{gwB, gwC, gwD}
	f := newFixture(t, gwD, start) // the set gwD learns before it is ready
	f.clock.advance(5 * time.Second)
	f.src.onChange(joined)
	f.clock.advance(300 * time.Millisecond)
	f.src.onChange(rolled)

	id := nthTracePlaced(t, 0, placement{start, gwA}, placement{joined, gwD}, placement{rolled, gwD})
	f.clock.advance(2 * time.Second)
	consume(t, f, id, 2)
	kept, _, _ := keptSpans(f, id)
	assert.Equal(t, 2, kept, "its earlier half is on gwA: keep this half")
}

func TestEachReplacedRingCountsForItsOwnWindow(t *testing.T) {
	// Two changes 20s apart: 15s after the second, a ring replaced 35s ago
	// no longer matters, the one replaced 15s ago still does.
	const gwD = "10.0.0.4:4317"
	start := []string{gwA, gwB, gwC}
	joined := []string{gwA, gwB, gwC, gwD}
	rolled := []string{gwB, gwC, gwD}
	f := newFixture(t, gwD, start)
	f.clock.advance(5 * time.Second)
	f.src.onChange(joined)
	f.clock.advance(20 * time.Second)
	f.src.onChange(rolled)
	f.clock.advance(15 * time.Second)

	longAgo := nthTracePlaced(t, 0, placement{start, gwA}, placement{joined, gwD}, placement{rolled, gwD})
	recent := traceOwnedBy(t, joined, gwA, rolled, gwD)
	consume(t, f, longAgo, 1)
	consume(t, f, recent, 1)
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
