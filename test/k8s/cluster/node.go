package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// Node is a real Kubernetes node of the test cluster: containerd with runc
// and the CNI plugins, the kubelet, kube-proxy and, once a test asks for
// NetworkPolicies enforced (Fabric.EnforceNetworkPolicies), kube-router,
// all built from the pinned releases (scripts/install-controlplane.sh,
// install-go-tool.sh).
//
// A node is a set of namespaces of its own inside the test's sandbox:
//   - a network namespace, joined to the sandbox's node network (Fabric) by
//     a veth; every iptables rule, route and sysctl under net/ the node
//     writes stays there;
//   - a PID namespace whose first process holds the node: when it ends, the
//     kernel ends every process of the node, the containers' shims
//     included;
//   - a mount namespace where the paths a kubelet and containerd treat as
//     fixed (/var/lib, /var/log, /run) are directories of the test, and
//     where the three host kernel settings a kubelet writes
//     (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) are
//     regular files bound over /proc/sys: the kubelet, with
//     protectKernelDefaults, only reads them, and the host's values never
//     change (HostKernelSettings is the check);
//   - a cgroup subtree under the test's own cgroup (the kubelet's
//     cgroupRoot), removed when the node stops.
type Node struct {
	Name    string
	IP      string // InternalIP on the node network
	PodCIDR string
	dnsIP   string // its DNS cache (Fabric.NodeDNSIPs)

	cluster *Fabric
	dir     string
	cgroups *nodeCgroups
	holder  *harness.Process // the node's first process, in all its namespaces
	holdPID int              // the holder's namespaced child, as the host sees it

	containerd, kubelet, proxy, policies *harness.Process
}

// nodeSettings are the host kernel settings a kubelet checks, and writes
// when they differ (pkg/kubelet/cm setupKernelTunables), with the values it
// wants: the node sees these, bound over /proc/sys. With
// protectKernelDefaults it only reads them, and fails on a difference.
var nodeSettings = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// startNode starts the i-th node: its namespaces and network, containerd
// (with the images imported), the kubelet and kube-proxy; it returns once
// the node is Ready in the API.
func (f *Fabric) startNode(i int, images []string) (_ *Node, err error) {
	n := &Node{
		Name: fmt.Sprintf("node-%d", i+1), IP: f.nodeIP(i), PodCIDR: f.podCIDR(i), dnsIP: f.nodeDNSIP(i),
		cluster: f, dir: filepath.Join(f.dir, fmt.Sprintf("node-%d", i+1)),
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("node %s: %w\n%s", n.Name, err, n.LogTails(30))
			n.Stop()
		}
	}()
	for _, d := range []string{"var/lib", "var/log", "run", "etc/cni/net.d", "certs.d", "sysctl", "logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	for setting, value := range nodeSettings {
		if err := os.WriteFile(filepath.Join(n.dir, "sysctl", strings.ReplaceAll(setting, "/", ".")), []byte(value+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if n.cgroups, err = f.cgroups.newNodeCgroups(n.Name); err != nil {
		return nil, err
	}
	if err := n.hold(); err != nil {
		return nil, err
	}
	if err := f.attach(n, i); err != nil {
		return nil, err
	}
	if err := n.writeConfigs(); err != nil {
		return nil, err
	}
	if n.containerd, err = n.start("containerd", filepath.Join(f.bins.containerd, "containerd"), "--config", n.path("containerd.toml")); err != nil {
		return nil, err
	}
	if err := n.waitContainerd(time.Minute); err != nil {
		return nil, err
	}
	for _, archive := range images {
		if out, err := n.ctr("images", "import", "--local", archive); err != nil {
			return nil, fmt.Errorf("import %s: %w\n%s", archive, err, out)
		}
	}
	if n.kubelet, err = n.start("kubelet", filepath.Join(f.bins.kube, "kubelet"),
		"--config="+n.path("kubelet.yaml"), "--kubeconfig="+n.path("kubelet.kubeconfig"),
		"--hostname-override="+n.Name, "--node-ip="+n.IP, "--node-labels=topology.kubernetes.io/zone=zone-"+n.Name,
		"--v=1"); err != nil {
		return nil, err
	}
	if n.proxy, err = n.start("kube-proxy", filepath.Join(f.bins.kube, "kube-proxy"), "--config="+n.path("kube-proxy.yaml"), "--v=1"); err != nil {
		return nil, err
	}
	if err := n.waitReady(2 * time.Minute); err != nil {
		return nil, err
	}
	if f.bins.kubeRouter != "" {
		if err := n.enforcePolicies(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// enforcePolicies starts kube-router, which enforces NetworkPolicies in the
// node's iptables and ipsets for the pods on it, as its firewall-only
// DaemonSet does (routes and Services stay with the CNI plugins and
// kube-proxy), and waits until it has synced. It needs the node
// registered: kube-router looks the node up first.
func (n *Node) enforcePolicies() (err error) {
	if n.policies, err = n.start("kube-router", filepath.Join(n.cluster.bins.kubeRouter, "kube-router"),
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--kubeconfig="+n.path("kube-router.kubeconfig"), "--hostname-override="+n.Name,
		"--service-cluster-ip-range="+ServiceCIDR, "--health-port="+strconv.Itoa(kubeRouterHealthPort), "--v=1"); err != nil {
		return err
	}
	return n.waitPoliciesHealthy(time.Minute)
}

// kubeRouterHealthPort is kube-router's default health port, on the node's
// own address.
const kubeRouterHealthPort = 20244

// waitPoliciesHealthy waits until kube-router's health check answers: its
// controllers have synced.
func (n *Node) waitPoliciesHealthy(timeout time.Duration) error {
	url := "http://" + net.JoinHostPort(n.IP, strconv.Itoa(kubeRouterHealthPort)) + "/healthz"
	client := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if n.policies.Exited() {
			return fmt.Errorf("kube-router exited:\n%s", n.policies.LogTail(20))
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-router not healthy after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *Node) path(name string) string { return filepath.Join(n.dir, name) }

// hold starts the node's first process in new mount, network and PID
// namespaces. It binds the node's own directories and kernel-setting files
// into place, then stays as the namespaces' init, reaping the orphans
// (containerd's shims) the PID namespace gives it.
func (n *Node) hold() error {
	var binds []string
	for setting := range nodeSettings {
		binds = append(binds, fmt.Sprintf("mount --bind %s /proc/sys/%s", filepath.Join(n.dir, "sysctl", strings.ReplaceAll(setting, "/", ".")), setting))
	}
	for _, d := range []string{"var/lib", "var/log", "run"} {
		binds = append(binds, fmt.Sprintf("mount --bind %s /%s", filepath.Join(n.dir, d), d))
	}
	script := strings.Join(binds, " && ") + ` && touch ` + n.path("held") + ` && trap : CHLD && while :; do sleep 1 & wait; done`
	var err error
	n.holder, err = harness.StartProcess("unshare", harness.ProcessSpec{
		Name: n.Name + "-init", LogDir: n.path("logs"),
		Args: []string{"--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation=private", "--", "/bin/bash", "-c", script},
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(n.path("held")); err == nil {
			break
		}
		if n.holder.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("the node's namespaces did not come up:\n%s", n.holder.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.holder.Pid(), n.holder.Pid()))
	if err != nil {
		return err
	}
	if n.holdPID, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		return fmt.Errorf("the node's init: %q: %w", children, err)
	}
	return nil
}

// enter is the command line that runs args in the node's namespaces.
func (n *Node) enter(args ...string) []string {
	return append([]string{"--target", strconv.Itoa(n.holdPID), "--mount", "--net", "--pid", "--"}, args...)
}

// start runs a daemon of the node in its namespaces.
func (n *Node) start(name, bin string, args ...string) (*harness.Process, error) {
	return harness.StartProcess("nsenter", harness.ProcessSpec{
		Name: n.Name + "-" + name, LogDir: n.path("logs"),
		Args: n.enter(append([]string{bin}, args...)...),
		Env:  map[string]string{"PATH": n.cluster.bins.containerd + ":" + n.cluster.bins.runc + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// run runs a command in the node's namespaces and returns its output.
func (n *Node) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", n.enter(args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ctr runs containerd's CLI on the node, in the kubelet's namespace.
func (n *Node) ctr(args ...string) (string, error) {
	return n.run(append([]string{filepath.Join(n.cluster.bins.containerd, "ctr"), "--address", "/run/containerd/containerd.sock", "--namespace", "k8s.io"}, args...)...)
}

func (n *Node) waitContainerd(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := n.ctr("version")
		if err == nil {
			return nil
		}
		if n.containerd.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("containerd not serving: %v\n%s", err, n.containerd.LogTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReady waits for the kubelet to register the node and report it Ready
// (the runtime and the network plugin up).
func (n *Node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "not registered"
	for time.Now().Before(deadline) {
		if n.kubelet.Exited() {
			return fmt.Errorf("kubelet exited")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		node, err := n.cluster.cp.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		cancel()
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return nil
					}
					last = c.Reason + ": " + c.Message
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("not Ready after %s: %s", timeout, last)
}

// LogTails returns the tail of each of the node's daemons' logs.
func (n *Node) LogTails(lines int) string {
	var sb strings.Builder
	for _, p := range []*harness.Process{n.holder, n.containerd, n.kubelet, n.proxy, n.policies} {
		if p != nil {
			fmt.Fprintf(&sb, "--- %s ---\n%s\n", p.Spec.Name, p.LogTail(lines))
		}
	}
	// The containers' logs, as the kubelet keeps them.
	logs, _ := filepath.Glob(filepath.Join(n.dir, "var/log/pods/*/*/*.log"))
	for _, path := range logs {
		data, _ := os.ReadFile(path)
		all := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&sb, "--- %s container log %s ---\n%s\n", n.Name, strings.TrimPrefix(path, n.dir), strings.Join(all[max(0, len(all)-lines):], "\n"))
	}
	return sb.String()
}

// Stop ends the node: the holder's end ends every process in its PID
// namespace (the daemons, the shims, the containers) and with them its
// network and mount namespaces; then its cgroups are removed.
func (n *Node) Stop() {
	for _, p := range []*harness.Process{n.policies, n.proxy, n.kubelet, n.containerd, n.holder} {
		if p != nil {
			p.Kill()
		}
	}
	if n.holdPID > 0 {
		waitGone(n.holdPID, 30*time.Second)
	}
	if n.cgroups != nil {
		n.cgroups.remove()
	}
	// The node's veth went with its network namespace; the sandbox's route
	// to its pods stays until removed.
	_ = ipCommands([][]string{{"route", "del", n.PodCIDR}})
}

// waitGone waits for a process to be gone (reaped, not a zombie).
func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HoldsPodIP reports whether ip is from the node's pod CIDR.
func (n *Node) HoldsPodIP(ip string) bool {
	_, cidr, err := net.ParseCIDR(n.PodCIDR)
	return err == nil && cidr.Contains(net.ParseIP(ip))
}

// ContainerPIDs are the processes of a pod's container (containerID as the
// pod's status gives it, runtime://id), as the host sees them: from the
// container's cgroup, which the kubelet and runc put under the node's
// cgroupRoot.
func (n *Node) ContainerPIDs(pod *corev1.Pod, containerID string) ([]int, error) {
	_, id, _ := strings.Cut(containerID, "://")
	var pids []int
	err := filepath.WalkDir(n.cgroups.roots[0], func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || filepath.Base(path) != id || !strings.Contains(path, string(pod.UID)) && !strings.Contains(path, strings.ReplaceAll(string(pod.UID), "-", "_")) {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return err
			}
			pids = append(pids, pid)
		}
		return filepath.SkipAll
	})
	if err == nil && len(pids) == 0 {
		err = fmt.Errorf("no cgroup for container %s of pod %s under %s", id, pod.Name, n.cgroups.Root)
	}
	return pids, err
}

// KillContainer has the runtime kill a container (containerID as the
// pod's status gives it) with SIGKILL, as a crash or `crictl stop -t 0`
// would; the kubelet then applies the pod's restart policy.
func (n *Node) KillContainer(containerID string) error {
	_, id, _ := strings.Cut(containerID, "://")
	if out, err := n.ctr("tasks", "kill", "--signal", "SIGKILL", id); err != nil {
		return fmt.Errorf("kill container %s: %w: %s", id, err, out)
	}
	return nil
}
