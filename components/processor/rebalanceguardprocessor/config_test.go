package rebalanceguardprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	def := createDefaultConfig().(*Config)
	with := func(f func(*Config)) *Config {
		c := *def
		f(&c)
		return &c
	}
	tests := []struct {
		name    string
		want    *Config
		wantErr []string // substrings of the validation error: each names a key
	}{
		{name: "static", want: with(func(c *Config) {
			c.Resolver.Static = &StaticResolver{Hostnames: []string{"10.0.0.1:4317", "10.0.0.2:4317"}}
			c.Self = "10.0.0.1:4317"
		})},
		{name: "dns", want: with(func(c *Config) {
			c.Resolver.DNS = &DNSResolver{Hostname: "tailgate-gateway-headless.observability.svc.cluster.local", Port: "4317", Interval: 2 * time.Second}
			c.Self, c.MaxTraces, c.DecisionWait, c.ActiveWindow, c.MovedInWindow = "10.0.0.1:4317", 1000, 10*time.Second, 20*time.Second, 45*time.Second
		})},
		{name: "k8s", want: with(func(c *Config) {
			c.Resolver.K8s = &K8sResolver{Service: "tailgate-gateway-headless.observability", Ports: []int32{4317}}
			c.Self, c.KeepAttribute, c.MarkerAttribute = "10.0.0.1:4317", "keep.me", "is.marker"
		})},
		{name: "disabled", want: with(func(c *Config) {
			c.Enabled = false
			c.Resolver.Static = &StaticResolver{Hostnames: []string{"10.0.0.1:4317"}}
			c.Self = "10.0.0.1:4317"
		})},
		{name: "two_resolvers", wantErr: []string{"resolver: exactly one of static, dns or k8s"}},
		{name: "no_resolver", wantErr: []string{"resolver: exactly one"}},
		{name: "bad_self", wantErr: []string{"self: must be host:port"}},
		{name: "bad_bounds", wantErr: []string{"max_traces must not be negative", "moved_in_window must be positive"}},
		{name: "active_window_within_decision_wait", wantErr: []string{"active_window (10s) must exceed decision_wait (10s)"}},
		{name: "no_decision_wait", wantErr: []string{"decision_wait must be positive"}},
		{name: "dns_self_unspecified", wantErr: []string{`self: host "0.0.0.0" must be this gateway's IP`}},
		{name: "k8s_bad_service", wantErr: []string{`resolver::k8s::service "tailgate-gateway-headless.observability.cluster.local": the third DNS label must be 'svc'`}},
		{name: "dns_agreement_over_decision_wait", wantErr: []string{"resolver::dns::interval: with 5s between polls, a 1s timeout and 5s of cluster DNS caching the gateways and agents may take 11s to agree on a change, not less than decision_wait (10s)"}},
		{name: "dns_agreement_disabled", want: with(func(c *Config) {
			c.Enabled = false
			c.Resolver.DNS = &DNSResolver{Hostname: "gw.example", Port: "4317", Interval: 5 * time.Second}
			c.Self, c.DecisionWait = "10.0.0.1:4317", 10*time.Second
		})},
		{name: "k8s_hostnames", want: with(func(c *Config) {
			c.Resolver.K8s = &K8sResolver{Service: "tailgate-gateway-headless.observability", Ports: []int32{4317}, ReturnHostnames: true}
			c.Self = "tailgate-gateway-0.tailgate-gateway-headless.observability:4317"
		})},
		{name: "k8s_self_name", wantErr: []string{`self: host "gateway-0" must be this gateway's IP`}},
		{name: "static_self_not_listed", want: with(func(c *Config) {
			// Not refused: only the static resolver, if a pipeline uses it,
			// decides; the run-time check reports it (self_in_ring).
			c.Resolver.Static = &StaticResolver{Hostnames: []string{"gw-1:4317", "gw-2:4317"}}
			c.Self = "10.0.0.1:4317"
		})},
		{name: "disabled_unspecified_self", want: with(func(c *Config) {
			c.Enabled = false
			c.Resolver.DNS = &DNSResolver{Hostname: "gw.example", Port: "4317"}
			c.Self = "0.0.0.0:4317"
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.name).String())
			require.NoError(t, err)
			cfg := createDefaultConfig()
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}

// TestActiveWindowFollowsDecisionWait: unset, active_window is derived from
// decision_wait and exceeds it whatever decision_wait is; set, it is used.
func TestActiveWindowFollowsDecisionWait(t *testing.T) {
	for _, wait := range []time.Duration{time.Second, 10 * time.Second, 45 * time.Second, 5 * time.Minute} {
		c := createDefaultConfig().(*Config)
		c.DecisionWait = wait
		assert.Greater(t, c.activeWindow(), wait, "derived active_window for decision_wait %s", wait)
	}
	c := createDefaultConfig().(*Config)
	c.DecisionWait, c.ActiveWindow = 10*time.Second, 12*time.Second
	assert.Equal(t, 12*time.Second, c.activeWindow())
}

// TestMaxTracesCoversTheActiveWindow: unset, max_traces holds the traces
// that arrive within active_window at the rate num_traces is sized for
// (num_traces per decision_wait), not num_traces alone.
func TestMaxTracesCoversTheActiveWindow(t *testing.T) {
	c := createDefaultConfig().(*Config)
	c.NumTraces, c.DecisionWait = 300_000, 10*time.Second
	assert.Equal(t, 900_000, c.maxTraces())
	c.MaxTraces = 1234
	assert.Equal(t, 1234, c.maxTraces())
}
