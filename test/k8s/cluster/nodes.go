package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/image"
)

// Fabric is the test cluster's real nodes and the network that joins them
// to the control plane (see Node).
type Fabric struct {
	Nodes []*Node

	cp       *ControlPlane
	dir      string
	bins     nodeBinaries
	cgroups  *nodeCgroupParent
	archives []string // the images every node imports
}

// nodeBinaries are the directories of the nodes' programs, each built from
// its pinned release into the tool cache. kubeRouter is empty until
// EnforceNetworkPolicies.
type nodeBinaries struct{ kube, containerd, runc, cni, kubeRouter string }

// installNodeBinaries builds (once; a no-op when cached) and locates the
// programs every node runs.
func installNodeBinaries(kubeDir string) (nodeBinaries, error) {
	b := nodeBinaries{kube: kubeDir}
	for _, t := range []struct {
		name string
		dir  *string
	}{{"containerd", &b.containerd}, {"runc", &b.runc}, {"cni-plugins", &b.cni}} {
		dir, err := harness.ToolDir(t.name)
		if err != nil {
			return b, err
		}
		*t.dir = dir
	}
	return b, nil
}

// kubernetesSource is the pinned k8s.io/kubernetes module's directory in
// the module cache (the control plane's build downloaded it).
func kubernetesSource() (string, error) {
	cmd := exec.Command("go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "build", "tools", "kubernetes")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("locate the k8s.io/kubernetes source: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// StartNodes starts count real nodes for the control plane, each with the
// pause image (built here, see image.BuildPause) and images imported into
// its runtime, as a pull from a registry would. It needs the sandbox's
// network namespace (test/sandbox).
func StartNodes(cp *ControlPlane, dir string, count int, images ...*image.Image) (_ *Fabric, err error) {
	f := &Fabric{cp: cp, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Stop()
		}
	}()
	if f.bins, err = installNodeBinaries(cp.BinDir); err != nil {
		return nil, err
	}
	source, err := kubernetesSource()
	if err != nil {
		return nil, err
	}
	pause, err := image.BuildPause(PauseImage, source)
	if err != nil {
		return nil, err
	}
	var archives []string
	for i, img := range append([]*image.Image{pause}, images...) {
		archive := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if err := img.SaveArchive(archive); err != nil {
			return nil, err
		}
		archives = append(archives, archive)
	}
	if f.cgroups, err = newNodeCgroupParent(); err != nil {
		return nil, err
	}
	if err := f.setUpNetwork(count); err != nil {
		return nil, err
	}
	f.archives = archives
	for i := range count {
		n, err := f.startNode(i, archives)
		if err != nil {
			return nil, err
		}
		f.Nodes = append(f.Nodes, n)
	}
	return f, nil
}

// EnforceNetworkPolicies makes the nodes enforce NetworkPolicies: it starts
// kube-router on every node (and on each node Replace starts from then on)
// and waits until each has synced its rules. Until then NetworkPolicies
// are stored and not enforced, as on a cluster without a policy provider.
// kube-router is built here on first use, so that only the tests of
// policies wait for its build (make test builds it beside the suite's
// other tools, scripts/test.sh). Calling it again does nothing.
func (f *Fabric) EnforceNetworkPolicies() error {
	if f.bins.kubeRouter != "" {
		return nil
	}
	dir, err := harness.ToolDir("kube-router")
	if err != nil {
		return err
	}
	if err := grantKubeRouter(f.cp); err != nil {
		return err
	}
	f.bins.kubeRouter = dir
	for _, n := range f.Nodes {
		if err := n.enforcePolicies(); err != nil {
			return fmt.Errorf("node %s: %w\n%s", n.Name, err, n.LogTails(30))
		}
	}
	return nil
}

// Stop stops every node, then removes what the nodes' cgroups needed.
func (f *Fabric) Stop() {
	for _, n := range f.Nodes {
		n.Stop()
	}
	if f.cgroups != nil {
		f.cgroups.remove()
	}
}

// LogTails returns the tails of every node's daemons' logs.
func (f *Fabric) LogTails(lines int) string {
	var sb strings.Builder
	for _, n := range f.Nodes {
		sb.WriteString(n.LogTails(lines))
	}
	return sb.String()
}

// TrustRegistry lets the nodes' runtimes pull from a registry the test
// serves over plain HTTP at host (host:port), as a cluster's operators
// configure a registry mirror (containerd's hosts.toml).
func (f *Fabric) TrustRegistry(host string) error {
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+host, "http://"+host)
	for _, n := range f.Nodes {
		dir := filepath.Join(n.path("certs.d"), host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Node is the node of that name.
func (f *Fabric) Node(name string) *Node {
	for _, n := range f.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeNames are the nodes' names.
func (f *Fabric) NodeNames() []string {
	names := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		names[i] = n.Name
	}
	return names
}

// Lose ends a node at once, as a power loss would: its kubelet, runtime,
// kube-proxy and containers all die and its network is gone. Its Node and
// pods stay in the API as they were, until the node lifecycle controller
// finds the node's heartbeats missing.
func (f *Fabric) Lose(name string) {
	f.Node(name).Stop()
}

// Replace starts a lost node again from empty disks, under its name and
// addresses, as a replacement machine joins: its kubelet finds the pods
// still bound to it (the DaemonSet's) and runs them.
func (f *Fabric) Replace(name string) error {
	for i, n := range f.Nodes {
		if n.Name != name {
			continue
		}
		if err := os.RemoveAll(n.dir); err != nil {
			return err
		}
		replacement, err := f.startNode(i, f.archives)
		if err != nil {
			return err
		}
		f.Nodes[i] = replacement
		return nil
	}
	return fmt.Errorf("no node %s", name)
}
