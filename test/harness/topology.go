package harness

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"
)

// Node is one agent or gateway process and its ports.
type Node struct {
	Name    string
	Profile string // "agent" or "gateway"
	Ports   NodePorts
	Env     map[string]string
	// Set are the node's collector --set flags beyond its ports'.
	Set  []string
	Proc *Process
}

// OTLPEndpoint is the node's OTLP/gRPC host:port.
func (n *Node) OTLPEndpoint() string { return fmt.Sprintf("127.0.0.1:%d", n.Ports.OTLPGRPC) }

// TopologyConfig describes a local agent -> gateway -> sink topology.
type TopologyConfig struct {
	Agents, Gateways int
	// LogDir holds one log file per process and the gateways' queue storage.
	LogDir string
	// GatewayEnv overrides profile variables for every gateway, e.g.
	// TAILGATE_CLUSTER_NAME.
	GatewayEnv map[string]string
	// AgentEnv overrides profile variables for every agent.
	AgentEnv map[string]string
	// SinkAttrKeys are span, resource or scope attribute keys the sink
	// remembers per span (NewSink).
	SinkAttrKeys []string
	// Binary overrides the binary under test (default: BinaryPath), e.g. the
	// benchmark's upstream baseline.
	Binary string
	// GatewayProfile and AgentProfile override the tiers' profile files
	// (default: the shipped configs/gateway.yaml and configs/agent.yaml).
	GatewayProfile, AgentProfile string
	// GatewayLimits, when set, are every gateway's memory and CPU limits,
	// as a pod's.
	GatewayLimits *Limits
	// GatewaySet are collector --set overrides for every gateway
	// ("processors::tail_sampling::decision_wait=2s"), as a user would
	// pass them; they win over the topology's own.
	GatewaySet []string
	// AgentSet are collector --set overrides for every agent.
	AgentSet []string
	// GatewayOverlays are YAML files merged over every gateway's profile,
	// each one more --config, as a user's overlay is.
	GatewayOverlays []string
	// AgentOverlays are YAML files merged over every agent's profile.
	AgentOverlays []string
}

// Topology is a running local deployment: sink, gateways and agents.
type Topology struct {
	Sink     *Sink
	Gateways []*Node
	Agents   []*Node

	bin string
	cfg TopologyConfig
}

// StartTopology starts the sink, then the gateways, then the agents (static
// resolver pointing at the gateways), each from the shipped profile, and
// waits until every process is healthy. On error everything started is stopped.
func StartTopology(cfg TopologyConfig) (_ *Topology, err error) {
	bin := cfg.Binary
	if bin == "" {
		if bin, err = BinaryPath(); err != nil {
			return nil, err
		}
	}
	t := &Topology{bin: bin, cfg: cfg}
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	if t.Sink, err = NewSink(cfg.SinkAttrKeys...); err != nil {
		return nil, err
	}
	t.Gateways = newNodes("gateway", cfg.Gateways)
	if err := t.start(t.Gateways, t.gatewaySettings); err != nil {
		return nil, err
	}
	t.Agents = newNodes("agent", cfg.Agents)
	if err := t.start(t.Agents, t.agentSettings); err != nil {
		return nil, err
	}
	return t, nil
}

func newNodes(profile string, n int) []*Node {
	nodes := make([]*Node, n)
	for i := range nodes {
		nodes[i] = &Node{Name: fmt.Sprintf("%s-%d", profile, i+1), Profile: profile}
	}
	return nodes
}

// start launches a group of nodes on fresh ports and waits until each is
// healthy. Ports are picked free, but another package's test may take one
// before the collector binds it, so a group in which a node dies while
// starting is stopped and started again on new ports. The group goes
// together because its members' environment may name each other's ports
// (every gateway follows the whole gateway set).
func (t *Topology) start(nodes []*Node, settings func(*Node) (map[string]string, []string)) error {
	var err error
	for range 3 {
		for _, n := range nodes {
			if n.Ports, err = PickPorts(); err != nil {
				return err
			}
		}
		for _, n := range nodes {
			env, set := settings(n)
			n.Env = n.Ports.Env(n.Profile)
			maps.Copy(n.Env, env)
			n.Set = set
			if err = t.launch(n); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		for _, n := range nodes {
			if n.Proc != nil {
				n.Proc.Kill()
				n.Proc = nil
			}
		}
	}
	return err
}

// staticGatewaySet is the static resolver's list of every gateway, which
// the agents route over and the gateways' rebalance_guard follows.
func (t *Topology) staticGatewaySet() map[string]string {
	return map[string]string{
		"TAILGATE_GATEWAY_RESOLVER":         "static",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[" + strings.Join(t.GatewayEndpoints(), ", ") + "]",
	}
}

// gatewaySettings send every gateway's kept traces and RED metrics to the
// sink, and queue on disk (if a test lists that backend) in the log dir.
func (t *Topology) gatewaySettings(n *Node) (map[string]string, []string) {
	env := t.staticGatewaySet()
	maps.Copy(env, t.cfg.GatewayEnv)
	return env, append(SinkSet(t.Sink.Endpoint(), filepath.Join(t.cfg.LogDir, n.Name+"-queue")), t.cfg.GatewaySet...)
}

// SinkSet are the --set flags that point a gateway's primary backend and
// its OTLP RED metrics at sink (an OTLP/gRPC endpoint) and its disk
// queue's storage at dir.
func SinkSet(sink, dir string) []string {
	return append([]string{
		"exporters::otlp_grpc/backend_memory::endpoint=" + sink,
		"exporters::otlp_grpc/backend_disk::endpoint=" + sink,
		"exporters::otlp_grpc/metrics::endpoint=" + sink,
		"service::pipelines::metrics/spanmetrics::exporters=[prometheus, otlp_grpc/metrics]",
	}, StorageSet(dir)...)
}

// StorageSet are the --set flags that put a gateway's disk queue in dir
// (the profile's /var/lib/tailgate is the image's volume).
func StorageSet(dir string) []string {
	return []string{
		"extensions::file_storage/queue::directory=" + dir,
		"extensions::file_storage/queue::compaction::directory=" + dir,
	}
}

// BackendsSet is the --set flag that sends a gateway's kept traces to
// exporters (component IDs), in place of the profile's one backend.
func BackendsSet(exporters ...string) string {
	return "service::pipelines::traces/sampling::exporters=[" + strings.Join(exporters, ", ") + "]"
}

// AgentPassthrough is the --set flag that runs an agent outside
// Kubernetes: with no API to ask, k8s_attributes only tags the pod IP.
const AgentPassthrough = "processors::k8s_attributes::passthrough=true"

func (t *Topology) agentSettings(*Node) (map[string]string, []string) {
	env := t.staticGatewaySet()
	maps.Copy(env, t.cfg.AgentEnv)
	return env, append([]string{AgentPassthrough}, t.cfg.AgentSet...)
}

// Nodes are every agent and gateway, agents first.
func (t *Topology) Nodes() []*Node {
	return append(append([]*Node{}, t.Agents...), t.Gateways...)
}

// GatewayEndpoints are the gateways' OTLP/gRPC endpoints.
func (t *Topology) GatewayEndpoints() []string { return endpoints(t.Gateways) }

// AgentEndpoints are the agents' OTLP/gRPC endpoints.
func (t *Topology) AgentEndpoints() []string { return endpoints(t.Agents) }

func endpoints(nodes []*Node) []string {
	eps := make([]string, len(nodes))
	for i, n := range nodes {
		eps[i] = n.OTLPEndpoint()
	}
	return eps
}

func (t *Topology) launch(n *Node) error {
	profile := ProfilePath(n.Profile)
	if n.Profile == "gateway" && t.cfg.GatewayProfile != "" {
		profile = t.cfg.GatewayProfile
	}
	if n.Profile == "agent" && t.cfg.AgentProfile != "" {
		profile = t.cfg.AgentProfile
	}
	overlays := t.cfg.AgentOverlays
	if n.Profile == "gateway" {
		overlays = t.cfg.GatewayOverlays
	}
	spec := ProcessSpec{
		Name: n.Name, Args: n.Ports.Args(n.Profile, profile, overlays, n.Set...), Env: n.Env, HealthPort: n.Ports.Health, LogDir: t.cfg.LogDir,
	}
	if n.Profile == "gateway" {
		spec.Limits = t.cfg.GatewayLimits
	}
	p, err := StartProcess(t.bin, spec)
	if err != nil {
		return err
	}
	n.Proc = p
	return p.WaitHealthy(30 * time.Second)
}

// Restart stops a node (gracefully, or by SIGKILL when kill is set) and
// starts it again on the same ports with the same environment.
func (t *Topology) Restart(n *Node, kill bool) error {
	if kill {
		n.Proc.Kill()
	} else if err := n.Proc.Stop(60 * time.Second); err != nil {
		return err
	}
	return t.launch(n)
}

// Stop stops agents first (they flush to the gateways), then gateways (they
// decide pending traces and flush to the sink), then the sink.
func (t *Topology) Stop() error {
	var errs []error
	for _, group := range [][]*Node{t.Agents, t.Gateways} {
		for _, n := range group {
			if n.Proc != nil {
				errs = append(errs, n.Proc.Stop(30*time.Second))
			}
		}
	}
	if t.Sink != nil {
		t.Sink.Close()
	}
	return errors.Join(errs...)
}

// GuardSet is the --set flag that turns the rebalance_guard of resolver
// (dns, k8s or static) on or off: off is stock tail sampling, split traces
// decided in halves.
func GuardSet(resolver string, enabled bool) string {
	return fmt.Sprintf("processors::rebalance_guard/%s::enabled=%t", resolver, enabled)
}
