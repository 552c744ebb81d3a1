package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Config of the rebalance_guard processor.
type Config struct {
	// Enabled turns the guard on. Off, the processor marks nothing (for
	// comparisons with stock behaviour); it still removes the attributes it
	// owns from received spans (reserved.go), since the keep policy and the
	// marker filter read them either way.
	Enabled bool `mapstructure:"enabled"`

	// Resolver finds the gateway set exactly as the agents' load_balancing
	// exporter does: give it the same settings (one of static, dns, k8s).
	Resolver ResolverConfig `mapstructure:"resolver"`

	// Self is this gateway's endpoint as the agents' resolver reports it,
	// e.g. ${env:MY_POD_IP}:4317.
	Self string `mapstructure:"self"`

	// MaxTraces bounds the traces tracked as recently seen here. Unset (0),
	// it is num_traces scaled from decision_wait to active_window: the
	// traces that arrive within active_window at the rate tail_sampling is
	// sized for.
	MaxTraces int `mapstructure:"max_traces"`

	// NumTraces is the gateway's tail_sampling num_traces (the traces it
	// holds within one decision_wait): set it from the same value.
	NumTraces int `mapstructure:"num_traces"`

	// DecisionWait is the gateway's tail_sampling decision_wait: set it from
	// the same value, so the guard's windows follow it.
	DecisionWait time.Duration `mapstructure:"decision_wait"`

	// AgentLag is how much later than this gateway the agents may switch to
	// a new gateway set. Unset (0): the dns resolver's agreement time
	// (dnsAgreement: both sides poll independently, through caches), 2s for
	// the k8s resolver (both watch the same EndpointSlices), 10s for a
	// static list (changed by restarts).
	AgentLag time.Duration `mapstructure:"agent_lag"`

	// ClockSkew bounds how far the clocks of the applications (span start
	// times) and of this gateway may differ.
	ClockSkew time.Duration `mapstructure:"clock_skew"`

	// ActiveWindow is how long after its last span a trace still counts as
	// in flight. It must exceed decision_wait: a trace whose half was
	// already decided cannot be saved by a marker. Unset (0), it is
	// activeWindowPerDecisionWait times decision_wait, so it follows
	// whatever decision_wait the environment gives.
	ActiveWindow time.Duration `mapstructure:"active_window"`

	// MovedInWindow is how long after a membership change the spans of
	// traces that moved here are marked: it must cover the agents' lag in
	// seeing the change plus the spread of a trace's spans.
	MovedInWindow time.Duration `mapstructure:"moved_in_window"`

	// KeepAttribute is set (true) on marker spans and on marked spans; the
	// gateway's first tail_sampling policy keeps traces that carry it.
	KeepAttribute string `mapstructure:"keep_attribute"`

	// MarkerAttribute is set (true) on injected marker spans only, so they
	// can be dropped after sampling.
	MarkerAttribute string `mapstructure:"marker_attribute"`
}

// ResolverConfig has the same shape as load_balancing's `resolver`.
type ResolverConfig struct {
	Static *StaticResolver `mapstructure:"static"`
	DNS    *DNSResolver    `mapstructure:"dns"`
	K8s    *K8sResolver    `mapstructure:"k8s"`
}

// StaticResolver is a fixed list of gateway endpoints.
type StaticResolver struct {
	Hostnames []string `mapstructure:"hostnames"`
}

// DNSResolver polls a name, typically a headless Service, for A/AAAA records.
type DNSResolver struct {
	Hostname string        `mapstructure:"hostname"`
	Port     string        `mapstructure:"port"`
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"`
}

// K8sResolver watches a Service's EndpointSlices.
type K8sResolver struct {
	Service string        `mapstructure:"service"`
	Ports   []int32       `mapstructure:"ports"`
	Timeout time.Duration `mapstructure:"timeout"`
	// ReturnHostnames lists endpoints by their hostname (as
	// "hostname.service.namespace", for StatefulSet pods) instead of IP.
	ReturnHostnames bool `mapstructure:"return_hostnames"`
}

var _ component.Config = (*Config)(nil)

// activeWindowPerDecisionWait derives active_window from decision_wait when
// it is not set: a trace is decided decision_wait after its first span, so
// one decision_wait after its last span suffices on a quiet gateway; the
// rest is margin for spans queued and retried on their way (agent queues,
// a gateway's memory_limiter refusals).
const activeWindowPerDecisionWait = 3

// activeWindow is the effective active_window.
func (c *Config) activeWindow() time.Duration {
	if c.ActiveWindow > 0 {
		return c.ActiveWindow
	}
	return activeWindowPerDecisionWait * c.DecisionWait
}

// maxTraces is the effective max_traces.
func (c *Config) maxTraces() int {
	if c.MaxTraces > 0 {
		return c.MaxTraces
	}
	return max(1000, int(int64(c.NumTraces)*int64(c.activeWindow())/int64(c.DecisionWait)))
}

// clusterDNSCache is how long after a change the cluster's DNS may still
// answer with the gateway set before it: CoreDNS's kubernetes plugin gives
// a headless Service's records a 5s TTL (its `ttl` default), and its cache
// (and NodeLocal DNSCache) serves an answer that long. Each agent and
// gateway may ask a different cache, filled at a different moment.
const clusterDNSCache = 5 * time.Second

// dnsAgreement is how long after a change of the gateway set every agent
// and gateway following it through the dns resolver may take to see it:
// a cached answer's age, the wait for the next poll, and the poll itself.
// Each party is somewhere in that span, so it bounds both how much later
// than this gateway an agent switches and how much later this gateway may
// learn what an agent already follows.
func (r DNSResolver) dnsAgreement() time.Duration {
	r = r.withDefaults()
	return clusterDNSCache + r.Interval + r.Timeout
}

// withDefaults is r with the exporter's dns resolver defaults for what it
// leaves unset.
func (r DNSResolver) withDefaults() DNSResolver {
	if r.Interval == 0 {
		r.Interval = defaultDNSInterval
	}
	if r.Timeout == 0 {
		r.Timeout = defaultDNSTimeout
	}
	return r
}

// agentLag is the effective agent_lag.
func (c *Config) agentLag() time.Duration {
	switch {
	case c.AgentLag > 0:
		return c.AgentLag
	case c.Resolver.DNS != nil:
		return c.Resolver.DNS.dnsAgreement()
	case c.Resolver.K8s != nil:
		return 2 * time.Second
	}
	return 10 * time.Second
}

func createDefaultConfig() component.Config {
	return &Config{
		Enabled: true,
		// tail_sampling's own defaults.
		NumTraces:       50_000,
		DecisionWait:    30 * time.Second,
		ClockSkew:       2 * time.Second,
		MovedInWindow:   30 * time.Second,
		KeepAttribute:   "tailgate.rebalance.keep",
		MarkerAttribute: "tailgate.rebalance.marker",
	}
}

// Validate checks the configuration; errors name the offending key.
func (c *Config) Validate() error {
	var errs []error
	n := 0
	if c.Resolver.Static != nil {
		n++
		if len(c.Resolver.Static.Hostnames) == 0 {
			errs = append(errs, errors.New("resolver::static::hostnames must not be empty"))
		}
	}
	if c.Resolver.DNS != nil {
		n++
		if c.Resolver.DNS.Hostname == "" {
			errs = append(errs, errors.New("resolver::dns::hostname must be set"))
		}
		if c.Resolver.DNS.Interval < 0 || c.Resolver.DNS.Timeout < 0 {
			errs = append(errs, errors.New("resolver::dns::interval and timeout must not be negative"))
		} else if agree := c.Resolver.DNS.dnsAgreement(); c.Enabled && c.DecisionWait > 0 && agree >= c.DecisionWait {
			// A gateway that learns of a change after tail_sampling has
			// decided the traces the change moved away from it cannot mark
			// them: their halves here are decided alone.
			dns := c.Resolver.DNS.withDefaults()
			errs = append(errs, fmt.Errorf("resolver::dns::interval: with %s between polls, a %s timeout and %s of cluster DNS caching the gateways and agents may take %s to agree on a change, not less than decision_wait (%s): traces split by a change would be decided in halves; poll more often (the agents' load_balancing resolver too) or raise decision_wait",
				dns.Interval, dns.Timeout, clusterDNSCache, agree, c.DecisionWait))
		}
	}
	if c.Resolver.K8s != nil {
		n++
		if c.Resolver.K8s.Service == "" {
			errs = append(errs, errors.New("resolver::k8s::service must be set"))
		} else if _, _, _, err := parseK8sService(c.Resolver.K8s.Service); err != nil {
			errs = append(errs, err)
		}
		if c.Resolver.K8s.Timeout < 0 {
			errs = append(errs, errors.New("resolver::k8s::timeout must not be negative"))
		}
	}
	if n != 1 {
		errs = append(errs, fmt.Errorf("resolver: exactly one of static, dns or k8s must be set, got %d", n))
	}
	if host, _, err := net.SplitHostPort(c.Self); err != nil {
		errs = append(errs, fmt.Errorf("self: must be host:port as the agents address this gateway: %w", err))
	} else if c.Enabled && n == 1 {
		errs = append(errs, c.validateSelf(host)...)
	}
	if c.MaxTraces < 0 {
		errs = append(errs, errors.New("max_traces must not be negative"))
	}
	if c.NumTraces <= 0 {
		errs = append(errs, errors.New("num_traces must be positive"))
	}
	if c.DecisionWait <= 0 {
		errs = append(errs, errors.New("decision_wait must be positive"))
	}
	if c.AgentLag < 0 || c.ClockSkew < 0 {
		errs = append(errs, errors.New("agent_lag and clock_skew must not be negative"))
	}
	if c.ActiveWindow < 0 {
		errs = append(errs, errors.New("active_window must not be negative"))
	} else if c.ActiveWindow > 0 && c.ActiveWindow <= c.DecisionWait {
		errs = append(errs, fmt.Errorf("active_window (%s) must exceed decision_wait (%s): a trace decided before it ends cannot be kept whole; leave it unset to derive it", c.ActiveWindow, c.DecisionWait))
	}
	if c.MovedInWindow <= 0 {
		errs = append(errs, errors.New("moved_in_window must be positive"))
	}
	if strings.TrimSpace(c.KeepAttribute) == "" {
		errs = append(errs, errors.New("keep_attribute must be set"))
	}
	if strings.TrimSpace(c.MarkerAttribute) == "" || c.MarkerAttribute == c.KeepAttribute {
		errs = append(errs, errors.New("marker_attribute must be set and differ from keep_attribute"))
	}
	return errors.Join(errs...)
}

// validateSelf rejects a self that no resolver listing pod IPs can ever
// hold: the guard would then treat every trace as owned elsewhere and keep
// all of them. Only what is wrong wherever this configuration is used is
// checked here: a profile defines one instance per resolver and the
// collector validates all of them, also those no pipeline uses, so a port
// or a static list that only the chosen resolver decides is checked at run
// time instead (self_in_ring, and a warning when a ring settles without
// self).
func (c *Config) validateSelf(host string) []error {
	if c.Resolver.Static != nil || (c.Resolver.K8s != nil && c.Resolver.K8s.ReturnHostnames) {
		return nil // a static list, and hostnames, name gateways any way they like
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return []error{fmt.Errorf("self: host %q must be this gateway's IP as the agents' resolver lists it (the dns and k8s resolvers list pod IPs; 0.0.0.0 and names never match): set MY_POD_IP to the pod IP, or disable the guard for a lone gateway", host)}
	}
	return nil
}
