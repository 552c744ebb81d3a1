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
	FabricIP    = "10.243.0.1"
	nodesBridge = "tg-nodes"
	// ClusterCIDR holds every real node's pod CIDR (one /24 each). The
	// process kubelet's pods are in 10.244.0.0/16.
	ClusterCIDR = "10.245.0.0/16"
)

func (f *Fabric) nodeIP(i int) string  { return fmt.Sprintf("10.243.0.%d", 10+i) }
func (f *Fabric) podCIDR(i int) string { return fmt.Sprintf("10.245.%d.0/24", i+1) }

// setUpNetwork creates the node network's bridge and lets the sandbox
// forward between nodes (its own ip_forward: a per-namespace setting).
func setUpNetwork() error {
	if err := ipCommands([][]string{
		{"link", "add", nodesBridge, "type", "bridge"},
		{"addr", "add", FabricIP + "/24", "dev", nodesBridge},
		{"link", "set", nodesBridge, "up"},
	}); err != nil {
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
