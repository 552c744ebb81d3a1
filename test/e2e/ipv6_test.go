package e2e

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestProfilesServeOnAnIPv6PodIP: on an IPv6-only pod the downward API
// gives a bare address (fd00::1, here ::1). Both profiles start on it
// unchanged: receivers, health_check and telemetry listen on it, and the
// gateway's rebalance_guard finds itself in a gateway set written the way
// the resolvers write IPv6 endpoints ([::1]:port).
func TestProfilesServeOnAnIPv6PodIP(t *testing.T) {
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	for _, profile := range []string{"agent", "gateway"} {
		t.Run(profile, func(t *testing.T) {
			ports, err := harness.PickPorts()
			require.NoError(t, err)
			env := ports.Env()
			self := net.JoinHostPort("::1", strconv.Itoa(ports.OTLPGRPC))
			env["MY_POD_IP"] = "::1"
			env["TAILGATE_K8S_PASSTHROUGH"] = "true"
			env["TAILGATE_STORAGE_DIR"] = t.TempDir()
			env["TAILGATE_GATEWAY_RESOLVER"] = "static"
			env["TAILGATE_GATEWAY_STATIC_HOSTNAMES"] = fmt.Sprintf("[%q]", self)
			p, err := harness.StartProcess(bin, harness.ProcessSpec{
				Name: profile, Args: []string{"--config", harness.ProfilePath(profile)}, Env: env,
				HealthHost: "::1", HealthPort: ports.Health, LogDir: t.TempDir(),
			})
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Stop(30 * time.Second) })
			require.NoError(t, p.WaitHealthy(30*time.Second))

			for name, port := range map[string]int{"OTLP/gRPC": ports.OTLPGRPC, "OTLP/HTTP": ports.OTLPHTTP} {
				conn, err := net.DialTimeout("tcp", net.JoinHostPort("::1", strconv.Itoa(port)), 5*time.Second)
				if assert.NoError(t, err, "%s receiver on [::1]:%d", name, port) {
					conn.Close()
				}
			}
			s, err := harness.ScrapeMetricsAt(net.JoinHostPort("::1", strconv.Itoa(ports.Telemetry)))
			require.NoError(t, err, "internal telemetry on [::1]")
			if profile == "gateway" {
				assert.Equal(t, 1.0, s.Sum("otelcol_processor_rebalance_guard_self_in_ring"), "the guard did not find %s in the gateway set", self)
			}
		})
	}
}
