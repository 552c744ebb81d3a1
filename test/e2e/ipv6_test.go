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
	for _, profile := range []string{"agent", "gateway"} {
		t.Run(profile, func(t *testing.T) {
			var self string
			_, ports := startLoneNode(t, profile, "::1", func(p harness.NodePorts) (map[string]string, []string) {
				self = net.JoinHostPort("::1", strconv.Itoa(p.OTLPGRPC))
				return map[string]string{
					"TAILGATE_GATEWAY_RESOLVER": "static", "TAILGATE_GATEWAY_STATIC_HOSTNAMES": fmt.Sprintf("[%q]", self),
				}, agentOutsideKubernetes(profile)
			})

			for name, port := range map[string]int{"OTLP/gRPC": ports.OTLPGRPC, "OTLP/HTTP": ports.OTLPHTTP} {
				conn, err := net.DialTimeout("tcp", net.JoinHostPort("::1", strconv.Itoa(port)), 5*time.Second)
				if assert.NoError(t, err, "%s receiver on [::1]:%d", name, port) {
					conn.Close()
				}
			}
			s, err := harness.ScrapeMetricsAt(net.JoinHostPort("::1", strconv.Itoa(ports.Telemetry)))
			require.NoError(t, err, "internal telemetry on [::1]")
			if profile == "gateway" {
				assert.Equal(t, 1.0, s.Sum(harness.MetricGuardSelfInRing), "the guard did not find %s in the gateway set", self)
			}
		})
	}
}
