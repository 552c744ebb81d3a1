package harness

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

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
}

// PickPorts picks a free port for each of a collector's listeners.
func PickPorts() (NodePorts, error) {
	p, err := FreePorts(7)
	if err != nil {
		return NodePorts{}, err
	}
	return NodePorts{p[0], p[1], p[2], p[3], p[4], p[5], p[6]}, nil
}

// Env is the profile variables that put a collector started from either
// shipped profile on these ports, on 127.0.0.1: the one mapping from ports
// to the profiles' variables (README.md lists them).
func (p NodePorts) Env() map[string]string {
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

// LoneGatewayEnv is Env for a gateway started on its own, outside a
// Topology: its rebalance_guard (default dns resolver) then expects the
// gateways on its own OTLP port, as in a cluster where every gateway
// listens on the port the agents send to (the guard refuses a self whose
// port the resolver would never list).
func (p NodePorts) LoneGatewayEnv() map[string]string {
	env := p.Env()
	env["TAILGATE_GATEWAY_OTLP_PORT"] = strconv.Itoa(p.OTLPGRPC)
	return env
}
