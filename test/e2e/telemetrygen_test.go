package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestTelemetrygenLoadThroughTheAgents drives load with upstream's
// telemetrygen (the OpenTelemetry Go SDK's batching OTLP exporters) into
// both agents, over gRPC into one and OTLP/HTTP into the other: error
// traces of a root and four children, each arriving complete at the
// backend, and RED metrics counting every span of each service.
func TestTelemetrygenLoadThroughTheAgents(t *testing.T) {
	bin, err := harness.ToolBinary("telemetrygen", "telemetrygen")
	require.NoError(t, err)
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 2, GatewaySet: gatewaySet})

	const workers, tracesPerWorker, children = 2, 100, 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		load sync.WaitGroup
		errs = make([]error, len(topo.Agents))
	)
	for i, agent := range topo.Agents {
		args := []string{"traces", "--otlp-insecure", "--workers", fmt.Sprint(workers), "--traces", fmt.Sprint(tracesPerWorker),
			"--rate", "50", "--child-spans", fmt.Sprint(children), "--status-code", "Error",
			"--service", fmt.Sprintf("loadgen-%d", i+1)}
		if i == 0 {
			args = append(args, "--otlp-endpoint", agent.OTLPEndpoint())
		} else {
			args = append(args, "--otlp-http", "--otlp-endpoint", fmt.Sprintf("127.0.0.1:%d", agent.Ports.OTLPHTTP))
		}
		load.Go(func() {
			if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("telemetrygen %v: %w\n%s", args, err, out)
			}
		})
	}
	load.Wait()
	require.NoError(t, errors.Join(errs...))
	settle(t, topo, 3*time.Second, time.Minute)

	const traces, spansPerTrace = 2 * workers * tracesPerWorker, 1 + children
	ids := topo.Sink.TraceIDs()
	assert.Len(t, ids, traces, "error traces at the backend")
	partial := 0
	for _, id := range ids {
		if n := len(topo.Sink.SpansOf(id)); n != spansPerTrace {
			partial++
			t.Logf("trace %s: %d of %d spans", id, n, spansPerTrace)
		}
	}
	assert.Zero(t, partial, "traces not complete at the backend")
	assert.Zero(t, topo.Counters().ReceiverRefused, "spans the collectors refused")

	eventually(t, 30*time.Second, "RED metrics count every span of each service", func() (bool, string) {
		scrapes := scrapeRED(t, topo)
		got, want := map[string]float64{}, map[string]float64{}
		for i := range topo.Agents {
			service := fmt.Sprintf("loadgen-%d", i+1)
			got[service] = sumRED(scrapes, redCalls, "service_name", service)
			want[service] = workers * tracesPerWorker * spansPerTrace
		}
		return maps.Equal(got, want), fmt.Sprintf("calls per service %v, want %v", got, want)
	})
}
