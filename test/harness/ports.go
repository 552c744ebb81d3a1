package harness

import (
	"fmt"
	"net"
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
