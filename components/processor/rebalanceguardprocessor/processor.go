package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadata"
)

// Reasons a trace is marked, as the `reason` metric attribute.
const (
	reasonMovedOut = "moved_out" // active here, the new ring gives it to another gateway
	reasonMovedIn  = "moved_in"  // moved here with a recent change: a half may be elsewhere
	reasonNotOwned = "not_owned" // spans arrive for a trace another gateway owns, begun before a recent change (agents lag)
	reasonShutdown = "shutdown"  // active here when this gateway shut down
)

// guard is the rebalance_guard processor. See README.md for the rules.
type guard struct {
	cfg    *Config
	next   consumer.Traces
	src    membership
	clock  clock
	logger *zap.Logger
	tb     *metadata.TelemetryBuilder

	// selfEndpoint is Self as the resolvers write endpoints: host:port with
	// an IPv6 host bracketed and an IPv4 host bare, so a profile may bracket
	// any pod IP ("[${env:MY_POD_IP}]:4317") and still find itself.
	selfEndpoint string

	// reserved are the attributes the guard owns (reserved.go); every
	// received span is stripped of them, the guard on or off, since the
	// keep policy and the marker filter read them either way.
	reserved reservedAttributes
	// lastReservedLog (unix ns) limits the warning about received spans
	// carrying reserved attributes to one a minute: a sender doing it on
	// every span must not flood the log.
	lastReservedLog atomic.Int64

	mu      sync.Mutex
	tracker *tracker
	ring    *hashRing    // current ring; empty until the first resolution
	self    int32        // index of Self in ring, -1 when not a member
	history *ringHistory // rings replaced within moved_in_window, for moved-in detection
	stopped bool

	sweepStop    chan struct{}
	sweepDone    chan struct{}
	shutdownOnce sync.Once
	reasonSet    map[string]metric.MeasurementOption
}

func newGuard(set processor.Settings, cfg *Config, next consumer.Traces, src membership, clk clock) (*guard, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	g := &guard{
		cfg: cfg, next: next, src: src, clock: clk, logger: set.Logger, tb: tb, selfEndpoint: canonicalEndpoint(cfg.Self),
		reserved: newReservedAttributes(cfg),
		tracker:  newTracker(cfg.maxTraces(), cfg.activeWindow()), ring: &hashRing{}, self: -1,
		history:   newRingHistory(cfg.MovedInWindow, cfg.agentLag()+cfg.ClockSkew),
		reasonSet: map[string]metric.MeasurementOption{},
	}
	for _, r := range []string{reasonMovedOut, reasonMovedIn, reasonNotOwned, reasonShutdown} {
		g.reasonSet[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	return g, nil
}

func (g *guard) Capabilities() consumer.Capabilities { return consumer.Capabilities{MutatesData: true} }

func (g *guard) Start(ctx context.Context, _ component.Host) error {
	if !g.cfg.Enabled {
		return nil
	}
	g.sweepStop, g.sweepDone = make(chan struct{}), make(chan struct{})
	go g.sweep()
	return g.src.start(ctx, g.onMembership)
}

// sweep forgets traces that went quiet, once a second, and reports the
// tracked count and the traces forgotten too early.
func (g *guard) sweep() {
	defer close(g.sweepDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.sweepStop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		g.tracker.expire(g.clock.Now().UnixNano())
		n, evicted := g.tracker.len(), g.tracker.takeEvicted()
		g.mu.Unlock()
		ctx := context.Background()
		g.tb.ProcessorRebalanceGuardTrackedTraces.Record(ctx, int64(n))
		if evicted > 0 {
			g.tb.ProcessorRebalanceGuardTracesEvicted.Add(ctx, evicted)
			g.logger.Warn("rebalance_guard: traces forgotten while still in flight: max_traces is too small for the traffic",
				zap.Int64("traces", evicted), zap.Int("max_traces", g.cfg.maxTraces()))
		}
	}
}

// onMembership applies a (possibly) new gateway set. On a real change every
// trace still undecided here whose owner changed gets a marker, and spans
// arriving in the next moved_in_window for traces a replaced ring gave to
// another gateway, or that another gateway owns now, are marked if they
// started before the agents can have switched (see history.go). The first
// set learned is the starting point, not a change: with the dns and k8s
// resolvers a new gateway is not in it yet (it is published once ready),
// and its own arrival later is an ordinary change. A gateway that is in its first set (a static list, a
// restart in place) treats traces begun before its start as moved in.
func (g *guard) onMembership(members []string) {
	now := g.clock.Now()
	next := newHashRing(members)
	g.mu.Lock()
	if g.stopped || next.sameAs(g.ring) {
		g.mu.Unlock()
		return
	}
	old := g.ring
	var movedOut, movedIn []pcommon.TraceID
	if old.empty() {
		if next.indexOf(g.selfEndpoint) >= 0 {
			g.history.addStart(now.UnixNano())
		}
	} else {
		if !next.empty() {
			g.tracker.active(now.UnixNano(), func(e *traceEntry) {
				if e.marked || g.decided(e, now.UnixNano()) {
					return
				}
				was, is := old.owner(e.id), next.owner(e.id)
				if was == is {
					return
				}
				e.marked = true
				if was == endpointWithPort(g.selfEndpoint) {
					movedOut = append(movedOut, e.id)
				} else {
					movedIn = append(movedIn, e.id)
				}
			})
		}
		g.history.add(old, g.self, now.UnixNano())
	}
	g.ring = next
	g.self = next.indexOf(g.selfEndpoint)
	selfInRing := g.self >= 0
	g.mu.Unlock()

	ctx := context.Background()
	g.tb.ProcessorRebalanceGuardRingChanges.Add(ctx, 1)
	g.tb.ProcessorRebalanceGuardRingMembers.Record(ctx, int64(len(next.endpoints)))
	g.tb.ProcessorRebalanceGuardSelfInRing.Record(ctx, boolInt(selfInRing)) // an empty ring holds no one
	fields := []zap.Field{zap.Strings("members", members), zap.String("self", g.selfEndpoint), zap.Bool("self_in_ring", selfInRing),
		zap.Int("marked_moved_out", len(movedOut)), zap.Int("marked_moved_in", len(movedIn))}
	if !selfInRing && !next.empty() {
		// Normal for a moment while a new gateway waits to be published;
		// lasting, it means self does not match how the resolver lists this
		// gateway: every trace here counts as owned elsewhere, and the guard
		// marks spans only around changes, by their start times.
		g.logger.Warn("rebalance_guard: this gateway (self) is not in the gateway set; until it is, it cannot tell its own traces, and traces split by a membership change may be decided in halves", fields...)
	} else {
		g.logger.Info("rebalance_guard: gateway set changed", fields...)
	}
	g.inject(ctx, movedOut, reasonMovedOut)
	g.inject(ctx, movedIn, reasonMovedIn)
}

// decided reports whether tail_sampling has decided the trace here: it
// does so decision_wait after the trace's first span, checking once a
// second. A marker cannot change a decision, and once the agents have
// switched no later span of the trace comes here.
func (g *guard) decided(e *traceEntry, now int64) bool {
	return now-e.firstSeen >= int64(g.cfg.DecisionWait+time.Second)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// inject sends marker spans for the traces downstream.
func (g *guard) inject(ctx context.Context, ids []pcommon.TraceID, reason string) {
	if len(ids) == 0 {
		return
	}
	g.tb.ProcessorRebalanceGuardTracesMarked.Add(ctx, int64(len(ids)), g.reasonSet[reason])
	for start := 0; start < len(ids); start += markerBatch {
		batch := ids[start:min(start+markerBatch, len(ids))]
		td := buildMarkers(batch, reason, g.cfg.KeepAttribute, g.cfg.MarkerAttribute, g.clock.Now())
		if err := g.next.ConsumeTraces(ctx, td); err != nil {
			g.logger.Error("rebalance_guard: could not inject markers; those traces may be decided in halves",
				zap.String("reason", reason), zap.Int("traces", len(batch)), zap.Error(err))
			continue
		}
		g.tb.ProcessorRebalanceGuardMarkersInjected.Add(ctx, int64(len(batch)))
	}
}

// ConsumeTraces tracks every trace and marks the spans of traces that moved
// here with a recent change, or that another gateway owns and that began
// before a recent change (agents that have not switched yet). A span of a
// trace owned elsewhere while the set is steady came from a sender that
// does not route by trace ID: it is not marked, so the policies decide its
// trace.
func (g *guard) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if n, service := g.reserved.stripAll(td); n > 0 {
		g.reportReserved(ctx, n, service)
	}
	if !g.cfg.Enabled {
		return g.next.ConsumeTraces(ctx, td)
	}
	var notOwned, marked int64
	var newlyNotOwned, newlyMovedIn int64
	g.mu.Lock()
	now := g.clock.Now().UnixNano()
	ring, self := g.ring, g.self
	g.history.expire(now)
	var lastID pcommon.TraceID
	var last *traceEntry
	var lastMark, lastNotOwned bool
	// Spans of the current run that started before this are marked: those
	// of a trace that moved here, or of a trace owned elsewhere that a
	// lagging agent may have sent (see history.go). The latter bound is the
	// same for every trace of the batch.
	var markBefore int64
	notOwnedBefore := g.history.changedBefore(now)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				id := sp.TraceID()
				if last == nil || id != lastID {
					// Spans of one trace usually come together: look the
					// rings up once per run. An empty ring means the
					// membership is unknown: mark nothing.
					last, lastID = g.tracker.touch(id, now), id
					sum := traceIDChecksum(id) // once, for the current and the replaced rings
					lastNotOwned = !ring.empty() && ring.ownerOfChecksum(sum) != self
					lastMark, markBefore = last.marked, 0
					switch {
					case lastMark || ring.empty():
					case lastNotOwned:
						markBefore = notOwnedBefore
					default:
						markBefore = g.history.movedInBefore(sum, now)
					}
				}
				if !lastMark && markBefore > 0 && int64(sp.StartTimestamp()) < markBefore {
					last.marked, lastMark = true, true
					if lastNotOwned {
						newlyNotOwned++
					} else {
						newlyMovedIn++
					}
				}
				if lastNotOwned {
					notOwned++
				}
				if lastMark {
					sp.Attributes().PutBool(g.cfg.KeepAttribute, true)
					marked++
				}
			}
		}
	}
	g.mu.Unlock()
	if notOwned > 0 {
		g.tb.ProcessorRebalanceGuardSpansNotOwned.Add(ctx, notOwned)
	}
	if marked > 0 {
		g.tb.ProcessorRebalanceGuardSpansMarked.Add(ctx, marked)
	}
	if newlyNotOwned > 0 {
		g.tb.ProcessorRebalanceGuardTracesMarked.Add(ctx, newlyNotOwned, g.reasonSet[reasonNotOwned])
	}
	if newlyMovedIn > 0 {
		g.tb.ProcessorRebalanceGuardTracesMarked.Add(ctx, newlyMovedIn, g.reasonSet[reasonMovedIn])
	}
	return g.next.ConsumeTraces(ctx, td)
}

// reportReserved counts received spans that carried reserved attributes
// (now removed) and warns at most once a minute, naming a sender.
func (g *guard) reportReserved(ctx context.Context, spans int64, service string) {
	g.tb.ProcessorRebalanceGuardSpansReservedAttributesRemoved.Add(ctx, spans)
	now, last := g.clock.Now().UnixNano(), g.lastReservedLog.Load()
	if last != 0 && now-last < int64(time.Minute) || !g.lastReservedLog.CompareAndSwap(last, now) {
		return
	}
	g.logger.Warn("rebalance_guard: received spans carrying attributes reserved to the guard; they were removed, so they force no trace kept and drop no span",
		zap.Strings("attributes", g.reserved.keys[:]), zap.Int64("spans", spans), zap.String("service.name", service))
}

// Shutdown marks every trace still undecided here before the processors after
// this one shut down: the collector shuts a pipeline down from its
// receivers towards its exporters, so tail_sampling (next) is still running
// and decides these traces, with their markers, at its own shutdown.
func (g *guard) Shutdown(ctx context.Context) error {
	if !g.cfg.Enabled || g.sweepStop == nil {
		return nil
	}
	var err error
	g.shutdownOnce.Do(func() {
		var ids []pcommon.TraceID
		g.mu.Lock()
		g.stopped = true
		now := g.clock.Now().UnixNano()
		g.tracker.active(now, func(e *traceEntry) {
			if !e.marked && !g.decided(e, now) {
				e.marked = true
				ids = append(ids, e.id)
			}
		})
		g.mu.Unlock()
		g.inject(ctx, ids, reasonShutdown)
		close(g.sweepStop)
		<-g.sweepDone
		err = g.src.shutdown(ctx)
		g.tb.Shutdown()
	})
	return err
}
