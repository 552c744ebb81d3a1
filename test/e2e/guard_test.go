package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestGuardThatCannotFindItselfIsLoud: a gateway whose rebalance_guard does
// not find its own address (self) in the gateway set it follows treats
// every trace as owned elsewhere and cannot protect its own at a change. Misconfigured the
// ways a user would (the agents' port differs from the receiver's; a static
// list that names the gateways), the gateway says so: self_in_ring is 0 and
// its log warns, naming self. Configured right, self_in_ring is 1 and it
// does not warn. (0.0.0.0 as the pod IP is refused by validation:
// test/distribution.)
func TestGuardThatCannotFindItselfIsLoud(t *testing.T) {
	cases := []struct {
		name   string
		env    func(harness.NodePorts) (map[string]string, []string)
		inRing bool
	}{
		{"dns, an overlay names self on another port than the agents send to", func(p harness.NodePorts) (map[string]string, []string) {
			return map[string]string{"TAILGATE_GATEWAY_RESOLVER": "dns", "TAILGATE_GATEWAY_DNS_NAME": "localhost"},
				[]string{fmt.Sprintf("processors::rebalance_guard/dns::self=127.0.0.1:%d", p.OTLPHTTP)}
		}, false},
		{"static list names the gateways", func(p harness.NodePorts) (map[string]string, []string) {
			return map[string]string{"TAILGATE_GATEWAY_RESOLVER": "static", "TAILGATE_GATEWAY_STATIC_HOSTNAMES": fmt.Sprintf("[localhost:%d]", p.OTLPGRPC)}, nil
		}, false},
		{"dns, configured right", func(p harness.NodePorts) (map[string]string, []string) {
			return map[string]string{"TAILGATE_GATEWAY_RESOLVER": "dns", "TAILGATE_GATEWAY_DNS_NAME": "localhost"}, nil
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, ports := startLoneNode(t, "gateway", "", c.env)
			self := fmt.Sprintf("127.0.0.1:%d", ports.OTLPGRPC)
			var members, inRing float64
			require.Eventually(t, func() bool {
				s, err := harness.ScrapeMetrics(ports.Telemetry)
				if err != nil || s.Sum(harness.MetricGuardRingMembers) == 0 {
					return false
				}
				members, inRing = s.Sum(harness.MetricGuardRingMembers), s.Sum(harness.MetricGuardSelfInRing)
				return true
			}, 30*time.Second, 200*time.Millisecond, "the guard never resolved the gateway set")
			log, err := os.ReadFile(p.LogPath)
			require.NoError(t, err)
			warned := strings.Contains(string(log), "is not in the gateway set") && strings.Contains(string(log), self)
			t.Logf("ring members %.0f, self_in_ring %.0f, warned %v", members, inRing, warned)
			if c.inRing {
				assert.Equal(t, 1.0, inRing)
				assert.False(t, warned, "warned although self is in the set:\n%s", log)
			} else {
				assert.Equal(t, 0.0, inRing)
				assert.True(t, warned, "no warning naming self %s:\n%s", self, log)
			}
		})
	}
}
