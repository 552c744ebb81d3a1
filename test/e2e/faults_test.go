package e2e

import (
	"context"
	"os"
	"strings"
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
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewayEnv: gatewayEnv})
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

// TestPersistentQueueSurvivesGatewayRestart: kept traces waiting in the
// gateways' persistent queues (backend down) survive a restart of every
// gateway and reach the backend once it is back.
func TestPersistentQueueSurvivesGatewayRestart(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewayEnv: gatewayEnv})
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
		require.NoError(t, topo.Restart(g, false), "restart %s", g.Name)
	}
	t.Logf("%.0f queued batches survived the restart of every gateway", queued)
	require.NoError(t, topo.Sink.Up())
	settle(t, topo, 3*time.Second, 3*time.Minute)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	assertKeptWhole(t, ev)
	assertNormalRate(t, ev)
}

// TestGatewayKilledMidRun: one gateway is SIGKILLed while traffic flows and
// stays down (static resolver: the agents keep routing its share to it).
// The rest of the system carries on; the agents report the failures; the
// loss of interesting traces is measured and reported, not hidden. With the
// agents' per-gateway queues the dead gateway's share (about 1/3 of trace
// IDs) is lost and nothing else: the others' traces arrive whole, with no
// duplicates (docs/benchmarks.md compares the top-level-retry alternative).
func TestGatewayKilledMidRun(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewayEnv: gatewayEnv})
	plans := plan(t, 1500, 3)

	victim := topo.Gateways[1]
	const killAt = 3 * time.Second
	sent := sendWithEvents(t, topo, plans, map[time.Duration]func(){killAt: victim.Proc.Kill})
	// The agents keep retrying the dead gateway's batches for their retry
	// budget, so their queues never drain here: wait for the backend to go
	// quiet instead.
	topo.Sink.WaitQuiet(context.Background(), decisionWait+time.Second, 5*time.Second, time.Minute, nil)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	// The agents keep one queue per gateway (configs/agent.yaml), and upstream
	// gives those per-gateway exporters no metrics (loadbalancingexporter
	// v0.161.0 hands them a no-op MeterProvider), so the agents report the
	// failures in their logs, naming the dead gateway's endpoint.
	failures := 0
	for _, a := range topo.Agents {
		require.False(t, a.Proc.Exited(), "agent %s died", a.Name)
		log, err := os.ReadFile(a.Proc.LogPath)
		require.NoError(t, err)
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "error") && strings.Contains(line, victim.OTLPEndpoint()) {
				failures++
			}
		}
	}
	for _, g := range topo.Gateways {
		if g != victim {
			require.False(t, g.Proc.Exited(), "%s died", g.Name)
		}
	}
	assert.Positive(t, failures, "no agent logged a failed export to the dead gateway %s", victim.OTLPEndpoint())

	// The run continued: interesting traces that began after the kill still
	// reached the backend whole through the surviving gateways.
	afterKill := 0
	for _, p := range plans {
		if p.Kind != harness.Normal && p.Start > killAt && len(topo.Sink.SpansOf(p.ID)) == len(p.Spans) {
			afterKill++
		}
	}
	assert.Positive(t, afterKill, "no interesting trace begun after the kill arrived complete")

	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("REPORT gateway SIGKILL at %s of %s: %s traces sent %d, complete %d, partial %d, lost %d",
			killAt, sent.Elapsed.Round(time.Second), k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	t.Logf("REPORT interesting traces begun after the kill and delivered complete: %d", afterKill)
	t.Logf("REPORT agent log errors naming the dead gateway: %d, duplicate spans at the backend: %d", failures, ev.Duplicates)
}
