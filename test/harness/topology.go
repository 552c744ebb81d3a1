package harness

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NodePorts are the ports one collector listens on.
type NodePorts struct {
	OTLPGRPC, OTLPHTTP, Health, Telemetry, Pprof, Zpages, Prometheus int
}

// Node is one agent or gateway process and its ports.
type Node struct {
	Name    string
	Profile string // "agent" or "gateway"
	Ports   NodePorts
	Env     map[string]string
	Proc    *Process
}

// OTLPEndpoint is the node's OTLP/gRPC host:port.
func (n *Node) OTLPEndpoint() string { return fmt.Sprintf("127.0.0.1:%d", n.Ports.OTLPGRPC) }

// TopologyConfig describes a local agent -> gateway -> sink topology.
type TopologyConfig struct {
	Agents, Gateways int
	// LogDir holds one log file per process and the gateways' queue storage.
	LogDir string
	// GatewayEnv and AgentEnv override profile variables for every gateway or
	// agent, e.g. TAILGATE_DECISION_WAIT.
	GatewayEnv, AgentEnv map[string]string
	// SinkAttrKeys are attributes the sink remembers per span.
	SinkAttrKeys []string
	// ExtraArgs are added to every process's command line (e.g. feature gates).
	ExtraArgs []string
	// Binary overrides the binary under test (default: BinaryPath), e.g. the
	// benchmark's upstream baseline.
	Binary string
	// GatewayProfile overrides the gateway profile file (default: the
	// shipped configs/gateway.yaml).
	GatewayProfile string
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
	// Gateways learn the gateway set the way agents do (static resolver
	// here), so their ports are all picked before any of them starts.
	for i := range cfg.Gateways {
		n := &Node{Name: fmt.Sprintf("gateway-%d", i+1), Profile: "gateway"}
		if n.Ports, err = pickPorts(); err != nil {
			return nil, err
		}
		t.Gateways = append(t.Gateways, n)
	}
	for _, n := range t.Gateways {
		n.Env = nodeEnv(n.Ports)
		for k, v := range t.gatewayEnv(n)(n.Ports) {
			n.Env[k] = v
		}
		if err := t.launch(n); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Agents {
		n := &Node{Name: fmt.Sprintf("agent-%d", i+1), Profile: "agent"}
		if err := t.start(n, t.agentEnv); err != nil {
			return nil, err
		}
		t.Agents = append(t.Agents, n)
	}
	return t, nil
}

func (t *Topology) gatewayEnv(n *Node) func(NodePorts) map[string]string {
	return func(NodePorts) map[string]string {
		env := map[string]string{
			"TAILGATE_BACKEND_ENDPOINT":  t.Sink.Endpoint(),
			"TAILGATE_METRICS_ENDPOINT":  t.Sink.Endpoint(),
			"TAILGATE_METRICS_EXPORTERS": "[prometheus, otlp_grpc/metrics]",
			"TAILGATE_STORAGE_DIR":       filepath.Join(t.cfg.LogDir, n.Name+"-queue"),
			// The same gateway set the agents route over (rebalance_guard).
			"TAILGATE_GATEWAY_RESOLVER":         "static",
			"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[" + strings.Join(t.GatewayEndpoints(), ", ") + "]",
		}
		for k, v := range t.cfg.GatewayEnv {
			env[k] = v
		}
		return env
	}
}

func (t *Topology) agentEnv(NodePorts) map[string]string {
	env := map[string]string{
		// No Kubernetes API here: k8s_attributes only tags the pod IP.
		"TAILGATE_K8S_PASSTHROUGH":          "true",
		"TAILGATE_GATEWAY_RESOLVER":         "static",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[" + strings.Join(t.GatewayEndpoints(), ", ") + "]",
	}
	for k, v := range t.cfg.AgentEnv {
		env[k] = v
	}
	return env
}

// Nodes are every agent and gateway, agents first.
func (t *Topology) Nodes() []*Node {
	return append(append([]*Node{}, t.Agents...), t.Gateways...)
}

// GatewayEndpoints are the gateways' OTLP/gRPC endpoints.
func (t *Topology) GatewayEndpoints() []string {
	eps := make([]string, len(t.Gateways))
	for i, g := range t.Gateways {
		eps[i] = g.OTLPEndpoint()
	}
	return eps
}

// AgentEndpoints are the agents' OTLP/gRPC endpoints.
func (t *Topology) AgentEndpoints() []string {
	eps := make([]string, len(t.Agents))
	for i, a := range t.Agents {
		eps[i] = a.OTLPEndpoint()
	}
	return eps
}

// start launches a node on fresh ports. Ports are picked free but another
// package's test may grab one before the collector binds it, so a node that
// dies while starting is retried on new ports.
func (t *Topology) start(n *Node, env func(NodePorts) map[string]string) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		var err error
		if n.Ports, err = pickPorts(); err != nil {
			return err
		}
		n.Env = nodeEnv(n.Ports)
		for k, v := range env(n.Ports) {
			n.Env[k] = v
		}
		if lastErr = t.launch(n); lastErr == nil {
			return nil
		}
		if n.Proc != nil {
			n.Proc.Kill()
		}
	}
	return lastErr
}

func pickPorts() (NodePorts, error) {
	p, err := FreePorts(7)
	if err != nil {
		return NodePorts{}, err
	}
	return NodePorts{p[0], p[1], p[2], p[3], p[4], p[5], p[6]}, nil
}

func (t *Topology) launch(n *Node) error {
	profile := ProfilePath(n.Profile)
	if n.Profile == "gateway" && t.cfg.GatewayProfile != "" {
		profile = t.cfg.GatewayProfile
	}
	args := append([]string{"--config", profile}, t.cfg.ExtraArgs...)
	p, err := StartProcess(t.bin, ProcessSpec{
		Name: n.Name, Args: args, Env: n.Env, HealthPort: n.Ports.Health, LogDir: t.cfg.LogDir,
	})
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

func nodeEnv(p NodePorts) map[string]string {
	return map[string]string{
		"MY_POD_IP":                "127.0.0.1",
		"TAILGATE_OTLP_GRPC_PORT":  strconv.Itoa(p.OTLPGRPC),
		"TAILGATE_OTLP_HTTP_PORT":  strconv.Itoa(p.OTLPHTTP),
		"TAILGATE_HEALTH_PORT":     strconv.Itoa(p.Health),
		"TAILGATE_TELEMETRY_PORT":  strconv.Itoa(p.Telemetry),
		"TAILGATE_PPROF_PORT":      strconv.Itoa(p.Pprof),
		"TAILGATE_ZPAGES_PORT":     strconv.Itoa(p.Zpages),
		"TAILGATE_PROMETHEUS_PORT": strconv.Itoa(p.Prometheus),
	}
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
