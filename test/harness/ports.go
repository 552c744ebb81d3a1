package harness

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// IntakeHost is the address the test's servers that collectors send to (the
// sink, Jaeger, the registry) listen on: loopback, where the collectors run
// on the test's host. The Kubernetes tests' pods on real nodes reach the
// test's network namespace at its node-network address instead, and set
// it so (test/k8s/live TestMain) before starting any.
var IntakeHost = "127.0.0.1"

var (
	portsMu  sync.Mutex
	reserved = map[int]bool{}
)

// FreePort returns a loopback TCP port that was free a moment ago and that
// this process has not handed out before. Packages run in parallel, so there
// is a small window in which another process may take it; the harness starts
// a collector whose port is taken again (see Topology).
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !reserved[port] {
			reserved[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port found")
}

// FreePorts returns n distinct free ports.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}

// NodePorts are the ports one collector listens on.
type NodePorts struct {
	OTLPGRPC, OTLPHTTP, Health, Telemetry, Pprof, Zpages, Prometheus int
	// Host is the collector's pod IP (empty: 127.0.0.1): its receivers,
	// health_check and metrics listen there, its debug endpoints on
	// 127.0.0.1 whatever it is, as in a pod.
	Host string
}

// PickPorts picks a free port for each of a collector's listeners.
func PickPorts() (NodePorts, error) {
	p, err := FreePorts(7)
	if err != nil {
		return NodePorts{}, err
	}
	return NodePorts{p[0], p[1], p[2], p[3], p[4], p[5], p[6], ""}, nil
}

// Env is the environment of a collector on these ports: the pod IP
// (Host), and for a gateway the OTLP/gRPC port the agents send to, which
// its rebalance_guard expects every gateway on (the guard refuses a self
// whose port the resolver would never list).
func (p NodePorts) Env(profile string) map[string]string {
	env := map[string]string{"MY_POD_IP": p.host()}
	if profile == "gateway" {
		env["TAILGATE_GATEWAY_OTLP_PORT"] = strconv.Itoa(p.OTLPGRPC)
	}
	return env
}

// Set is the collector --set flags that put the rest of a collector's
// listeners, from either shipped profile, on these ports: the one mapping
// from ports to the profiles' keys.
func (p NodePorts) Set(profile string) []string {
	on := func(port int) string { return strconv.Quote(net.JoinHostPort(p.host(), strconv.Itoa(port))) }
	set := []string{
		"extensions::health_check::endpoint=" + on(p.Health),
		"extensions::pprof::endpoint=127.0.0.1:" + strconv.Itoa(p.Pprof),
		"extensions::zpages::endpoint=127.0.0.1:" + strconv.Itoa(p.Zpages),
		"receivers::otlp::protocols::http::endpoint=" + on(p.OTLPHTTP),
		// The whole reader, as a user's overlay gives it (lists replace),
		// with the tier label the shipped alerts select by.
		fmt.Sprintf("service::telemetry::metrics::readers=[{pull: {exporter: {prometheus: {host: %q, port: %d, with_resource_constant_labels: {included: [tailgate_tier]}}}}}]", p.host(), p.Telemetry),
	}
	if profile == "gateway" {
		return append(set, "exporters::prometheus::endpoint="+on(p.Prometheus))
	}
	return append(set, "receivers::otlp::protocols::grpc::endpoint="+on(p.OTLPGRPC))
}

func (p NodePorts) host() string {
	if p.Host == "" {
		return "127.0.0.1"
	}
	return p.Host
}

// Args are the arguments a collector of profile runs with on these ports
// from config and the overlays after it: RunArgs, then ConfigFlags with
// Set and the extra --set flags (which win).
func (p NodePorts) Args(profile, config string, overlays []string, extraSet ...string) []string {
	return append(RunArgs(profile, config), ConfigFlags(overlays, append(p.Set(profile), extraSet...)...)...)
}
