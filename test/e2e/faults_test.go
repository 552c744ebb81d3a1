package e2e

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// sendWithEvents sends plans while running events at offsets from the start
// of sending; it returns when both the sending and every event are done.
func sendWithEvents(t *testing.T, topo *harness.Topology, plans []harness.TracePlan, events map[time.Duration]func()) harness.SendResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := harness.RunAt(ctx, events)
	sent := send(t, topo, plans)
	wait()
	return sent
}

// TestBackendOutageLosesNoKeptSpans: the backend is down for 10s while
// traffic flows; the gateways' sending queues and retries hold the kept
// traces and deliver all of them when it is back.
func TestBackendOutageLosesNoKeptSpans(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: gatewaySet})
	plans := plan(t, 2250, 1) // 15s at 150 traces/s

	var downAt, upAt time.Time
	sent := sendWithEvents(t, topo, plans, map[time.Duration]func(){
		3 * time.Second:  func() { topo.Sink.Down(); downAt = time.Now() },
		13 * time.Second: func() { require.NoError(t, topo.Sink.Up()); upAt = time.Now() },
	})
	require.Zero(t, sent.SpansFailed)
	t.Logf("backend down for %s while traffic flowed", upAt.Sub(downAt).Round(time.Second))
	settle(t, topo, 3*time.Second, 3*time.Minute)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	assertKeptWhole(t, ev)
	assertNormalRate(t, ev)
	assert.Zero(t, topo.Counters().ExporterFailed, "exports given up")
}

// TestPersistentQueueSurvivesGatewayRestart: with the disk queue
// (otlp_grpc/backend_disk), kept traces waiting in the gateways'
// queues (backend down) survive a restart of every gateway on the same
// storage, graceful or a crash (SIGKILL: a container restarted in its pod,
// the emptyDir kept), and reach the backend once it is back.
func TestPersistentQueueSurvivesGatewayRestart(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill], func(t *testing.T) {
			set := withGatewaySet(harness.BackendsSet("otlp_grpc/backend_disk"))
			topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: set})
			plans := plan(t, 600, 2)

			topo.Sink.Down()
			sent := send(t, topo, plans)
			require.Zero(t, sent.SpansFailed)
			// Let every trace be decided and its batch reach the sending queue.
			time.Sleep(decisionWait + 2*time.Second)
			queued := topo.QueuedItems()
			require.Positive(t, queued, "nothing queued while the backend is down")
			require.Zero(t, topo.Sink.SpanCount())

			for _, g := range topo.Gateways {
				require.NoError(t, topo.Restart(g, kill), "restart %s", g.Name)
			}
			require.NoError(t, topo.Sink.Up())
			settle(t, topo, 3*time.Second, 3*time.Minute)

			ev := harness.Evaluate(plans, sent, topo.Sink)
			t.Logf("REPORT disk queue, every gateway restarted (%s) with %.0f batches queued: duplicate spans at the backend %d",
				map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill], queued, ev.Duplicates)
			assertKeptWhole(t, ev)
			assertNormalRate(t, ev)
		})
	}
}

// TestGatewayCrashLosesOnlyItsTracesInFlight: one of three gateways is
// SIGKILLed while traffic flows (a crash, an OOM kill) and restarted on the
// same address 3s later, as the kubelet restarts a crashed container; the
// agents (static resolver) keep its share and retry it meanwhile. A crash
// loses what the gateway held undecided, nothing else:
//   - no interesting trace breaks outside the crash's window (first span
//     sent between decision_wait + 2s before the kill, when traces still
//     undecided at the kill began, and 1s after it);
//   - inside the window, at most the victim's share (1/3) of the window's
//     interesting traces, plus 4 standard deviations of that share;
//   - no span reaches the backend twice.
func TestGatewayCrashLosesOnlyItsTracesInFlight(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: gatewaySet})
	plans := plan(t, 1500, 3)

	victim := topo.Gateways[1]
	const killAt, down = 4 * time.Second, 3 * time.Second
	sent := sendWithEvents(t, topo, plans, map[time.Duration]func(){killAt: func() {
		victim.Proc.Kill()
		time.Sleep(down)
		assert.NoError(t, topo.Restart(victim, false), "restart after the crash") // an event goroutine: no FailNow
	}})
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	settle(t, topo, 3*time.Second, 2*time.Minute)
	for _, n := range topo.Nodes() {
		require.False(t, n.Proc.Exited(), "%s died", n.Name)
	}

	ev := harness.Evaluate(plans, sent, topo.Sink)
	windowStart, windowEnd := killAt-decisionWait-2*time.Second, killAt+time.Second
	var inWindow, brokenInWindow, brokenOutside int
	for _, p := range plans {
		if p.Kind == harness.Normal {
			continue
		}
		in := p.FirstSendAt() >= windowStart && p.FirstSendAt() <= windowEnd
		broken := len(topo.Sink.SpansOf(p.ID)) != len(p.Spans)
		switch {
		case in && broken:
			inWindow++
			brokenInWindow++
		case in:
			inWindow++
		case broken:
			brokenOutside++
			t.Logf("broken outside the crash window: %s trace first sent at %s, %d of %d spans arrived",
				p.Kind, p.FirstSendAt(), len(topo.Sink.SpansOf(p.ID)), len(p.Spans))
		}
	}
	share := float64(inWindow) / 3
	bound := share + 4*math.Sqrt(float64(inWindow)*(1.0/3)*(2.0/3))
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("REPORT gateway SIGKILL at %s, back %s later: %s traces sent %d, complete %d, partial %d, lost %d",
			killAt, down, k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	t.Logf("REPORT interesting traces in the crash window: %d, broken %d (the victim's share %.0f, bound %.0f); broken outside it: %d; duplicate spans: %d",
		inWindow, brokenInWindow, share, bound, brokenOutside, ev.Duplicates)
	require.Positive(t, inWindow, "no interesting trace in flight at the crash")
	assert.Zero(t, brokenOutside, "interesting traces broken by the crash that were not in flight at it")
	assert.LessOrEqual(t, float64(brokenInWindow), bound, "more broken than the crashed gateway's share of the traces in flight")
	assert.Zero(t, ev.Duplicates, "spans delivered twice")
}
