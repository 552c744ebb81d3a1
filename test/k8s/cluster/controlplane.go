// Package cluster runs a real Kubernetes cluster for the tests: the control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// built by scripts/install-controlplane.sh) and real nodes (see Node).
package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// ControlPlane is a running etcd + kube-apiserver + kube-controller-manager
// + kube-scheduler.
type ControlPlane struct {
	BinDir     string
	Dir        string
	Kubeconfig string // admin kubeconfig, for kubectl
	Config     *rest.Config
	Client     kubernetes.Interface
	APIPort    int
	PKI        pki
	// AuditLog records, as JSON lines, every request a ServiceAccount of the
	// cluster makes (see Requests).
	AuditLog string

	procs []*harness.Process
}

// Controllers are the kube-controller-manager controllers the tests need;
// the rest (cloud, storage, certificates...) have nothing to act on here.
var Controllers = []string{
	"endpointslice-controller", "deployment-controller", "replicaset-controller",
	"daemonset-controller", "disruption-controller", "serviceaccount-controller",
	"serviceaccount-token-controller", "namespace-controller", "garbage-collector-controller",
	"horizontal-pod-autoscaler-controller", "root-ca-certificate-publisher-controller",
	// Lift a new node's not-ready taint; taint, and evict from, a node that
	// stops reporting.
	"node-lifecycle-controller", "taint-eviction-controller",
}

const adminToken = "tailgate-test-admin-token"

// kubectlTimeout bounds every kubectl call: longer than the longest
// `rollout status --timeout` the tests give it, so that one still reports
// its own timeout, yet a hung call cannot hold a test for ever.
const kubectlTimeout = 5 * time.Minute

// InstallBinaries runs scripts/install-controlplane.sh (a no-op once the
// binaries are cached) and returns the directory holding them.
func InstallBinaries() (string, error) {
	cmd := exec.Command(filepath.Join(harness.RepoRoot(), "scripts", "install-controlplane.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("install-controlplane.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// Start starts the control plane on loopback ports under dir.
func Start(binDir, dir string) (_ *ControlPlane, err error) {
	cp := &ControlPlane{BinDir: binDir, Dir: dir}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	if cp.PKI, err = writePKI(dir); err != nil {
		return nil, err
	}
	ports, err := harness.FreePorts(5)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedulerPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	cp.APIPort = apiPort

	etcd, err := harness.StartProcess(filepath.Join(binDir, "etcd"), harness.ProcessSpec{
		Name: "etcd", LogDir: dir, HealthPort: etcdClient, HealthPath: "/health",
		Args: []string{
			"--name=default", "--data-dir=" + filepath.Join(dir, "etcd"),
			"--listen-client-urls=http://127.0.0.1:" + strconv.Itoa(etcdClient),
			"--advertise-client-urls=http://127.0.0.1:" + strconv.Itoa(etcdClient),
			"--listen-peer-urls=http://127.0.0.1:" + strconv.Itoa(etcdPeer),
			"--initial-advertise-peer-urls=http://127.0.0.1:" + strconv.Itoa(etcdPeer),
			"--initial-cluster=default=http://127.0.0.1:" + strconv.Itoa(etcdPeer),
			"--unsafe-no-fsync", "--log-level=warn",
		},
	})
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, etcd)
	if err := etcd.WaitHealthy(30 * time.Second); err != nil {
		return nil, err
	}

	cp.AuditLog = filepath.Join(dir, "audit.log")
	auditPolicy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte(auditPolicyYAML), 0o644); err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	api, err := harness.StartProcess(filepath.Join(binDir, "kube-apiserver"), harness.ProcessSpec{
		Name: "kube-apiserver", LogDir: dir,
		Args: []string{
			"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdClient),
			// Every address of the sandbox's network namespace: loopback
			// for the test, FabricIP for real nodes.
			"--bind-address=0.0.0.0", "--secure-port=" + strconv.Itoa(apiPort),
			// The kubernetes Service's endpoint: where pods reach the API
			// server through its cluster IP (kube-proxy).
			"--advertise-address=" + FabricIP,
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--tls-cert-file=" + cp.PKI.ServingCert, "--tls-private-key-file=" + cp.PKI.ServingKey,
			"--client-ca-file=" + cp.PKI.CACert,
			"--token-auth-file=" + tokens,
			// Node: what a kubelet may read and write, as on any cluster
			// (real nodes authenticate as system:node:<name>).
			"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + cp.PKI.SAPub,
			"--service-account-signing-key-file=" + cp.PKI.SAKey,
			"--allow-privileged=false",
			// A pod on a lost node is evicted 20s after the node is found
			// lost (default 300s), so that the node-loss test is minutes,
			// not quarters of an hour: a cluster's own setting.
			"--default-not-ready-toleration-seconds=20", "--default-unreachable-toleration-seconds=20",
			"--audit-policy-file=" + auditPolicy, "--audit-log-path=" + cp.AuditLog,
			// The aggregation layer, for custom.metrics.k8s.io served by
			// prometheus-adapter: the front proxy's identity and the
			// headers it passes the caller's identity in (kubeadm's set).
			"--requestheader-client-ca-file=" + cp.PKI.FrontProxyCACert,
			"--requestheader-allowed-names=" + frontProxyClientName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + cp.PKI.ProxyClientCert, "--proxy-client-key-file=" + cp.PKI.ProxyClientKey,
			// No kube-proxy here: reach an APIService's backend at its
			// endpoint address instead of the Service's cluster IP.
			"--enable-aggregator-routing=true",
		},
	})
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, api)

	cp.Config = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(apiPort),
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.PKI.CACert},
		QPS:             100, Burst: 200,
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, err
	}
	if err := cp.waitReady(api, time.Minute); err != nil {
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, []byte(cp.kubeconfig()), 0o600); err != nil {
		return nil, err
	}

	kcm, err := harness.StartProcess(filepath.Join(binDir, "kube-controller-manager"), harness.ProcessSpec{
		Name: "kube-controller-manager", LogDir: dir,
		Args: append(cp.componentArgs(kcmPort),
			"--controllers="+strings.Join(Controllers, ","),
			"--service-account-private-key-file="+cp.PKI.SAKey,
			"--root-ca-file="+cp.PKI.CACert,
			"--use-service-account-credentials=false",
			// Quick reactions keep the tests short: a node is lost after
			// 30s without a heartbeat (default 50s; the kubelet renews its
			// lease every 10s).
			"--concurrent-deployment-syncs=5", "--horizontal-pod-autoscaler-sync-period=5s",
			"--node-monitor-period=2s", "--node-monitor-grace-period=30s",
		),
	})
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, kcm)

	scheduler, err := harness.StartProcess(filepath.Join(binDir, "kube-scheduler"), harness.ProcessSpec{
		Name: "kube-scheduler", LogDir: dir,
		Args: cp.componentArgs(schedulerPort),
	})
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, scheduler)
	return cp, nil
}

// componentArgs are the arguments the controller manager and the scheduler
// share: the admin's kubeconfig for the API and for checking their own
// callers, their secure port on loopback, no leader election.
func (cp *ControlPlane) componentArgs(port int) []string {
	return []string{
		"--kubeconfig=" + cp.Kubeconfig,
		"--authentication-kubeconfig=" + cp.Kubeconfig, "--authorization-kubeconfig=" + cp.Kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--leader-elect=false",
	}
}

func (cp *ControlPlane) waitReady(api *harness.Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if api.Exited() {
			return fmt.Errorf("kube-apiserver exited:\n%s", api.LogTail(40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s:\n%s", timeout, api.LogTail(40))
}

func (cp *ControlPlane) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, cp.Config.Host, cp.PKI.CACert, adminToken)
}

// Kubectl runs the built kubectl against the control plane.
func (cp *ControlPlane) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cp.BinDir, "kubectl"), append([]string{"--kubeconfig=" + cp.Kubeconfig}, args...)...)
	// Ends with the test binary, like every process the harness starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Logs returns the tail of each control-plane process's log.
func (cp *ControlPlane) Logs(lines int) string {
	var sb strings.Builder
	for _, p := range cp.procs {
		fmt.Fprintf(&sb, "--- %s ---\n%s\n", p.Spec.Name, p.LogTail(lines))
	}
	return sb.String()
}

// Stop stops the controller manager, the API server and etcd, in that order.
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		_ = cp.procs[i].Stop(15 * time.Second)
	}
}

// Credentials are what a client outside the cluster needs to reach its API
// server (Prometheus' kubernetes_sd_configs, for one): URL, a bearer token
// of cluster-admin, and the CA file of the serving certificate.
func (cp *ControlPlane) Credentials() (server, token, caFile string) {
	return cp.Config.Host, adminToken, cp.PKI.CACert
}
