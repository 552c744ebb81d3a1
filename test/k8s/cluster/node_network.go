package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The node network, inside the test's sandbox network namespace: a bridge
// (nodesBridge) holds FabricIP, where the control plane and the test's
// servers are reached from the nodes, and one veth per node; each node
// routes its pods' CIDR, and the sandbox routes every node's pod CIDR to
// that node, as a cloud network's routes do (no overlay).
const (
	// FabricIP is the sandbox's address on the node network: the API
	// server, and any server of the test that pods must reach, listen here.
	FabricIP = "10.243.0.1"
	// StandInPodIP is a second address of the sandbox on the node network,
	// for a server of the test that stands for a cluster's pod behind a
	// selector-less Service (prometheus-adapter, see CustomMetricsAPI).
	StandInPodIP = "10.243.0.2"
	nodesBridge  = "tg-nodes"
	// ClusterCIDR holds every node's pod CIDR (one /24 each).
	ClusterCIDR = "10.245.0.0/16"
	// ServiceCIDR is the Services' cluster IP range (the API server's
	// --service-cluster-ip-range; kube-router needs it too).
	ServiceCIDR = "10.96.0.0/16"
)

func (f *Fabric) nodeIP(i int) string  { return fmt.Sprintf("10.243.0.%d", 10+i) }
func (f *Fabric) podCIDR(i int) string { return fmt.Sprintf("10.245.%d.0/24", i+1) }

// nodeDNSIP is where the i-th node's DNS cache answers its pods (the
// kubelet's clusterDNS): an address of the sandbox on the node network, as
// NodeLocal DNSCache's is an address on each node.
func (f *Fabric) nodeDNSIP(i int) string { return fmt.Sprintf("10.243.0.%d", 100+i) }

// NodeDNSIPs are the nodes' DNS cache addresses, to serve
// (ClusterDNS.ServeNodeCaches).
func (f *Fabric) NodeDNSIPs() []string {
	ips := make([]string, len(f.Nodes))
	for i := range f.Nodes {
		ips[i] = f.nodeDNSIP(i)
	}
	return ips
}

// setUpNetwork creates the node network's bridge with the sandbox's
// addresses on it and lets the sandbox forward between nodes (its own
// ip_forward: a per-namespace setting).
func (f *Fabric) setUpNetwork(nodes int) error {
	cmds := [][]string{
		{"link", "add", nodesBridge, "type", "bridge"},
		{"addr", "add", FabricIP + "/24", "dev", nodesBridge},
		{"addr", "add", StandInPodIP + "/32", "dev", nodesBridge},
		{"link", "set", nodesBridge, "up"},
	}
	for i := range nodes {
		cmds = append(cmds, []string{"addr", "add", f.nodeDNSIP(i) + "/32", "dev", nodesBridge})
	}
	if err := ipCommands(cmds); err != nil {
		return err
	}
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
}

// attach joins a node's network namespace to the node network: a veth
// whose node end is the node's eth0, the node's default route through the
// sandbox, and the sandbox's route to the node's pods.
func (f *Fabric) attach(n *Node, i int) error {
	host := "tg-node" + strconv.Itoa(i+1)
	if err := ipCommands([][]string{
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(n.holdPID)},
		{"link", "set", host, "master", nodesBridge},
		{"link", "set", host, "up"},
	}); err != nil {
		return err
	}
	script := strings.Join([]string{
		"ip link set lo up",
		"ip addr add " + n.IP + "/24 dev eth0",
		"ip link set eth0 up",
		"ip route add default via " + FabricIP,
		// An address of the node's pod CIDR with no pod (one just
		// deleted) is unreachable at once, as with Calico's blackhole
		// routes, instead of looping between the node and the sandbox
		// until its TTL runs out while a connect waits.
		"ip route add unreachable " + n.PodCIDR,
		// The node forwards between its pods' veths and eth0 (ptp).
		"echo 1 > /proc/sys/net/ipv4/ip_forward",
	}, " && ")
	if out, err := exec.Command("nsenter", "--target", strconv.Itoa(n.holdPID), "--net", "--", "/bin/sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("node network: %w: %s", err, out)
	}
	return ipCommands([][]string{{"route", "add", n.PodCIDR, "via", n.IP}})
}

func ipCommands(cmds [][]string) error {
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// cniConfig is the node's pod network: a veth per pod (ptp) with an
// address from the node's CIDR (host-local), and host ports (portmap).
func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "tailgate-test",
  "plugins": [
    {"type": "ptp", "mtu": 1500, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR)
}

func (n *Node) writeCNIConfig() error {
	return os.WriteFile(filepath.Join(n.dir, "etc/cni/net.d/10-tailgate-test.conflist"), []byte(n.cniConfig()), 0o644)
}
