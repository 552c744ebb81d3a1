package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Registry is a real OCI registry, the CNCF Distribution server
// (cmd/registry, built by scripts/install-go-tool.sh), storing on disk under
// the test's directory and serving plain HTTP on loopback, as a release's
// registry would serve over TLS.
type Registry struct {
	// Host is the registry's host:port, the first part of its references.
	Host string
	proc *Process
}

// registryConfig is the Distribution server's configuration: filesystem
// storage, one plain-HTTP listener, and its health endpoint on the debug
// listener.
const registryConfig = `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  debug:
    addr: 127.0.0.1:%d
health:
  storagedriver:
    enabled: true
    interval: 1s
`

// StartRegistry starts a registry with its files under dir and waits until
// it answers.
func StartRegistry(dir string) (*Registry, error) {
	bin, err := ToolBinary("registry", "registry")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "registry.yaml")
	r := &Registry{Host: net.JoinHostPort(IntakeHost, strconv.Itoa(ports[0]))}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, registryConfig, filepath.Join(dir, "storage"), r.Host, ports[1]), 0o644); err != nil {
		return nil, err
	}
	if r.proc, err = StartProcess(bin, ProcessSpec{
		Name: "registry", Args: []string{"serve", cfg}, LogDir: dir,
		HealthPort: ports[1], HealthPath: "/debug/health",
	}); err != nil {
		return nil, err
	}
	if err := r.proc.WaitHealthy(time.Minute); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// Stop stops the registry.
func (r *Registry) Stop() { _ = r.proc.Stop(10 * time.Second) }
