package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"sync"
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
	reasonNotOwned = "not_owned" // spans arrive for a trace another gateway owns (agents lag)
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
		cfg: cfg, next: next, src: src, clock: clk, logger: set.Logger, tb: tb,
		tracker: newTracker(cfg.MaxTraces), ring: &hashRing{}, self: -1,
		history:   newRingHistory(cfg.MovedInWindow),
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
// tracked count.
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
		g.tracker.expire(g.clock.Now().UnixNano(), g.cfg.activeWindow())
		n := g.tracker.len()
		g.mu.Unlock()
		g.tb.ProcessorRebalanceGuardTrackedTraces.Record(context.Background(), int64(n))
	}
}

// onMembership applies a (possibly) new gateway set. On a real change every
// active trace whose owner changed gets a marker, and spans arriving in the
// next moved_in_window for traces the replaced ring gave to another gateway
// are marked (every ring replaced within the window counts, see
// history.go). The first set learned is the starting point, not a change:
// with the dns and k8s resolvers a new gateway is not in it yet (it is
// published once ready), and its own arrival later is an ordinary change;
// a static set is the same everywhere from the start.
func (g *guard) onMembership(members []string) {
	now := g.clock.Now()
	next := newHashRing(members)
	g.mu.Lock()
	if g.stopped || next.sameAs(g.ring) {
		g.mu.Unlock()
		return
	}
	old := g.ring
	first := old.empty()
	var movedOut, movedIn []pcommon.TraceID
	if !old.empty() && !next.empty() {
		g.tracker.active(now.UnixNano(), g.cfg.activeWindow(), func(e *traceEntry) {
			was, is := old.owner(e.id), next.owner(e.id)
			if was == is || e.marked {
				return
			}
			e.marked = true
			if was == endpointWithPort(g.cfg.Self) {
				movedOut = append(movedOut, e.id)
			} else {
				movedIn = append(movedIn, e.id)
			}
		})
	}
	if !first {
		g.history.add(old, g.self, now.UnixNano())
	}
	g.ring = next
	g.self = next.indexOf(g.cfg.Self)
	g.mu.Unlock()

	ctx := context.Background()
	g.tb.ProcessorRebalanceGuardRingChanges.Add(ctx, 1)
	g.tb.ProcessorRebalanceGuardRingMembers.Record(ctx, int64(len(next.endpoints)))
	g.logger.Info("rebalance_guard: gateway set changed",
		zap.Strings("members", members), zap.Bool("self_in_ring", g.self >= 0),
		zap.Int("marked_moved_out", len(movedOut)), zap.Int("marked_moved_in", len(movedIn)))
	g.inject(ctx, movedOut, reasonMovedOut)
	g.inject(ctx, movedIn, reasonMovedIn)
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

// ConsumeTraces tracks every trace and marks the spans of traces another
// gateway owns, or that moved here with a recent change.
func (g *guard) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
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
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				id := sp.TraceID()
				if last == nil || id != lastID {
					// Spans of one trace usually come together: decide once per run.
					last, lastID = g.tracker.touch(id, now), id
					// An empty ring means the membership is unknown: mark nothing.
					sum := traceIDChecksum(id) // once, for the current and the replaced rings
					lastNotOwned = !ring.empty() && ring.ownerOfChecksum(sum) != self
					movedIn := !lastNotOwned && !ring.empty() && g.history.elsewhere(sum, now)
					if (lastNotOwned || movedIn) && !last.marked {
						last.marked = true
						if lastNotOwned {
							newlyNotOwned++
						} else {
							newlyMovedIn++
						}
					}
					lastMark = last.marked
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

// Shutdown marks every trace still active here before the processors after
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
		g.tracker.active(g.clock.Now().UnixNano(), g.cfg.activeWindow(), func(e *traceEntry) {
			if !e.marked {
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
