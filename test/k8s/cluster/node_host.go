package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// hostKernelSettings are the host-wide settings a node's kubelet or
// kube-proxy would write if it could reach them: the kubelet's kernel
// tunables (bound over on the node, see Node) and kube-proxy's conntrack
// table size (not asked for, see kubeProxyConfig).
var hostKernelSettings = []string{
	"/proc/sys/vm/overcommit_memory",
	"/proc/sys/vm/panic_on_oom",
	"/proc/sys/kernel/panic",
	"/proc/sys/kernel/panic_on_oops",
	"/proc/sys/kernel/keys/root_maxkeys",
	"/proc/sys/kernel/keys/root_maxbytes",
	"/sys/module/nf_conntrack/parameters/hashsize",
}

// HostKernelSettings reads the host's values of the settings a node could
// change. The test compares a reading before the nodes start with one
// after they stop: they must be equal.
func HostKernelSettings() (map[string]string, error) {
	values := map[string]string{}
	for _, path := range hostKernelSettings {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) && strings.HasPrefix(path, "/sys/module/") {
			continue // the module is not loaded: nothing to change
		}
		if err != nil {
			return nil, err
		}
		values[filepath.Clean(path)] = strings.TrimSpace(string(data))
	}
	return values, nil
}

// CompareHostKernelSettings reports every setting whose value differs.
func CompareHostKernelSettings(before, after map[string]string) error {
	var changed []string
	for path, was := range before {
		if now := after[path]; now != was {
			changed = append(changed, fmt.Sprintf("%s: %q, now %q", path, was, now))
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("host kernel settings changed: %s", strings.Join(changed, "; "))
	}
	return nil
}
