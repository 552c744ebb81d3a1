package cluster

// The node's configuration files: containerd's, the kubelet's and
// kube-proxy's, with the credentials each uses against the API server.

import (
	"fmt"
	"os"
	"strconv"
)

// PauseImage is the pod sandbox image: containerd's default (pinned, so
// the kubelet's image garbage collection keeps it), built here from the
// pinned Kubernetes source (image.BuildPause) because no registry is
// reachable.
const PauseImage = "registry.k8s.io/pause:3.10.2"

func (n *Node) writeConfigs() error {
	pki := n.cluster.cp.PKI
	kubeletCert, kubeletKey, err := pki.IssueClientCert(n.Name+"-kubelet-client", "system:node:"+n.Name, "system:nodes")
	if err != nil {
		return err
	}
	servingCert, servingKey, err := pki.IssueServingCertForIP(n.Name+"-kubelet", n.IP)
	if err != nil {
		return err
	}
	proxyCert, proxyKey, err := pki.IssueClientCert(n.Name+"-kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	routerCert, routerKey, err := pki.IssueClientCert(n.Name+"-kube-router", kubeRouterUser)
	if err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":        n.containerdConfig(),
		"kubelet.yaml":           n.kubeletConfig(servingCert, servingKey),
		"kubelet.kubeconfig":     n.kubeconfig(kubeletCert, kubeletKey),
		"kube-proxy.yaml":        n.kubeProxyConfig(),
		"kube-proxy.kubeconfig":  n.kubeconfig(proxyCert, proxyKey),
		"kube-router.kubeconfig": n.kubeconfig(routerCert, routerKey),
		// The node's own resolver (what a pod with dnsPolicy Default
		// gets): its DNS cache.
		"resolv.conf": "nameserver " + n.dnsIP + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(n.path(name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return n.writeCNIConfig()
}

// containerdConfig: CRI with runc under the cgroupfs driver (as the
// kubelet), the CNI plugins built for the tests, and the state in the
// node's own /var/lib and /run.
func (n *Node) containerdConfig() string {
	b := n.cluster.bins
	return fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.runtime"]
  # The test runs without CAP_SYS_RESOURCE (CI's machines drop it), so no
  # process may lower its OOM score below the daemon's: the kubelet's
  # scores for pods (-998 for a sandbox) are clamped at containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%q]
    conf_dir = %q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %q
  [plugins."io.containerd.cri.v1.images".registry]
    # Per-registry settings (Fabric.TrustRegistry), read at each pull.
    config_path = %q
`, b.runc+"/runc", b.cni, n.path("etc/cni/net.d"), PauseImage, n.path("certs.d"))
}

// kubeletConfig: the cgroupfs driver under the node's cgroupRoot (cgroup
// v1 allowed, as this host has it), kernel defaults only read, and
// eviction and image GC thresholds low enough for a shared disk.
func (n *Node) kubeletConfig(servingCert, servingKey string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
protectKernelDefaults: true
failSwapOn: false
clusterDNS: [%s]
clusterDomain: cluster.local
resolvConf: %s
# Mounted ConfigMaps and Secrets follow their objects within this period
# (default 1m): the tests' policy and certificate rollouts stay short.
syncFrequency: 10s
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  imagefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, n.IP, servingCert, servingKey, n.cluster.cp.PKI.CACert, n.cgroups.Root, n.dnsIP, n.path("resolv.conf"))
}

// kubeProxyConfig: iptables mode in the node's network namespace. No
// conntrack setting is written: the table size (maxPerCore 0) is global to
// the host, and the timeouts are left as they are.
func (n *Node) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.path("kube-proxy.kubeconfig"), ClusterCIDR, n.Name, n.IP)
}

func (n *Node) kubeconfig(cert, key string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://%s:%s
    certificate-authority: %s
users:
- name: node
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: test
  context: {cluster: test, user: node}
current-context: test
`, FabricIP, strconv.Itoa(n.cluster.cp.APIPort), n.cluster.cp.PKI.CACert, cert, key)
}
