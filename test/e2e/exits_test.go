package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// The exit tests' backend is slower than the leaving gateway's exporter:
// each export takes 3s and the gateway sends with 2 consumers (the profile
// has 10) while it decides about a batch a second, so its sending queue
// holds a backlog when it stops, as a gateway's does when its backend
// falls behind.
const (
	slowBackend      = 3 * time.Second
	backendConsumers = 2
)

// TestGatewayExitDeliversWhatItDecided: a gateway stopped with SIGTERM (a
// scale-in, a rollout, a node drain) while it still holds undecided traces
// and, the backend being slow, a backlog of decided ones in its sending
// queue. It must decide what is pending and deliver everything before it
// exits, within the pod's grace period: every interesting trace complete at
// the backend, none stranded. The agents have finished sending, so nothing
// is lost on their side (that is the agents' part of an exit, measured on
// the live cluster).
//
// The shipped in-memory queue drains at shutdown; the disk queue does not
// (what is queued stays on the pod's emptyDir): with
// -e2e.backend-queue=disk (otlp_grpc/backend_disk) this test fails.
func TestGatewayExitDeliversWhatItDecided(t *testing.T) {
	set := withGatewaySet()
	if q := *flagBackendQueue; q != "" {
		set = append(set, harness.BackendsSet("otlp_grpc/backend_"+q))
	}
	for _, exp := range []string{"otlp_grpc/backend_memory", "otlp_grpc/backend_disk"} {
		set = append(set, fmt.Sprintf("exporters::%s::sending_queue::num_consumers=%d", exp, backendConsumers))
	}
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: set})
	topo.Sink.SetLatency(slowBackend)
	plans := plan(t, 1350, 5) // 9s at 150 traces/s: the backlog grows by about a batch every 3s

	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed)
	// The agents' last batches reach the gateways (export delay, batch
	// timeout); the newest traces are still within decision_wait.
	time.Sleep(1500 * time.Millisecond)
	victim := topo.Gateways[1]
	queued := func() float64 {
		s, err := harness.ScrapeMetrics(victim.Ports.Telemetry)
		require.NoError(t, err)
		return s.Sum(harness.MetricQueueSize)
	}()
	pending := func() float64 {
		s, err := harness.ScrapeMetrics(victim.Ports.Telemetry)
		require.NoError(t, err)
		return s.Sum("otelcol_processor_tail_sampling_sampling_traces_on_memory")
	}()
	stopped := time.Now()
	// The gateway pod's grace period after preStop (deploy/kubernetes/base).
	require.NoError(t, victim.Proc.Stop(40*time.Second), "the gateway did not finish its shutdown within the grace period")
	t.Logf("REPORT %s stopped with %.0f traces undecided and %.0f batches queued for a backend answering in %s; shutdown took %s",
		victim.Name, pending, queued, slowBackend, time.Since(stopped).Round(100*time.Millisecond))
	require.Positive(t, pending, "no undecided trace on the gateway when it stopped: the test shows nothing")
	require.Greater(t, queued, float64(backendConsumers), "no backlog beyond the batches in flight when the gateway stopped: the test shows nothing")

	topo.Sink.WaitQuiet(context.Background(), decisionWait+time.Second, 3*slowBackend, 3*time.Minute, func() bool { return topo.QueuedItems() == 0 })
	ev := harness.Evaluate(plans, sent, topo.Sink)
	assertKeptWhole(t, ev)
	assert.Zero(t, ev.Duplicates, "spans delivered twice")
}

// droppedAtExit sums what a stopped collector's log says its exporters
// dropped ("Exporting failed. Dropping data." with dropped_items).
func droppedAtExit(t *testing.T, p *harness.Process) int {
	t.Helper()
	data, err := os.ReadFile(p.LogPath)
	require.NoError(t, err)
	total := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "Dropping data") {
			continue
		}
		if m := droppedItemsRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	return total
}

var droppedItemsRe = regexp.MustCompile(`"dropped_items": (\d+)`)

// TestBackendDownAcrossAnExit: the backend is down while a gateway leaves
// (a scale-in during a backend incident). What that gateway decided cannot
// be delivered; the test shows where it goes: the gateway drops it at exit
// and says so (log line with the count; otelcol_exporter_send_failed_spans
// while it lasts), the other gateways hold theirs and deliver all of it
// when the backend is back. Only the leaving gateway's share is lost.
func TestBackendDownAcrossAnExit(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: gatewaySet})
	plans := plan(t, 900, 6)
	topo.Sink.Down()
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed)
	time.Sleep(decisionWait + 2*time.Second) // everything decided, queued for the backend
	victim := topo.Gateways[1]
	s, err := harness.ScrapeMetrics(victim.Ports.Telemetry)
	require.NoError(t, err)
	queued := s.Sum(harness.MetricQueueSize)
	require.Positive(t, queued, "nothing queued on the leaving gateway")
	// Its real share of the trace IDs, not 1/3: a ring's shares depend on
	// the gateways' endpoints (ports here) and stray from 1/3 by up to 16.5%
	// (see shareBound). Every trace reaches one gateway whole, so the
	// traces each received measure the shares.
	received := topo.Counters().GatewayNewTraces
	require.Len(t, received, len(topo.Gateways))
	var total float64
	for _, v := range received {
		total += v
	}
	require.Positive(t, total)
	share := received[1] / total
	require.NoError(t, victim.Proc.Stop(40*time.Second))
	dropped := droppedAtExit(t, victim.Proc)

	require.NoError(t, topo.Sink.Up())
	settle(t, topo, 3*time.Second, 3*time.Minute)
	ev := harness.Evaluate(plans, sent, topo.Sink)
	var interesting, lost, partial int
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		interesting, lost, partial = interesting+o.Sent, lost+o.Lost, partial+o.Partial
	}
	t.Logf("REPORT backend down across an exit: the leaving gateway had %.0f batches queued and logged %d spans dropped at exit; interesting traces lost %d of %d (its share of the traces: %.3f), partial %d",
		queued, dropped, lost, interesting, share, partial)
	assert.Positive(t, dropped, "the leaving gateway lost its queue without saying so")
	assert.Zero(t, partial, "traces broken: only the leaving gateway's whole traces may be lost")
	bound := float64(interesting)*share + 4*math.Sqrt(float64(interesting)*share*(1-share))
	assert.LessOrEqual(t, float64(lost), bound, "more lost than the leaving gateway's share")
	assert.Positive(t, lost, "nothing lost although the backend was down when the gateway left: the test shows nothing")
}
