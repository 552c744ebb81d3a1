// Package live applies the Kubernetes manifests to a real control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with real
// nodes (kubelet, containerd, runc, CNI, kube-proxy; see cluster.Node) that
// run the image, all inside a network and mount namespace of the test's
// own: the nodes and their pods have addresses on networks of that
// namespace, and nothing leaves it.
//
// The control plane, nodes and the applied base are shared by the tests of
// one run; TestMain stops everything at the end, also after a failure, and
// fails the run if a host kernel setting changed.
package live

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/image"
	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/sandbox"
)

const (
	namespace = "observability"
)

// imageRef is the image the base's kustomization (and the chart) names,
// the release's; the suite builds it locally under that reference.
var imageRef string

// env is the shared cluster the tests run against.
var env struct {
	cp    *cluster.ControlPlane
	nodes *cluster.Fabric
	sink  *harness.Sink
	dns   *cluster.ClusterDNS
	dir   string
	// hostSettings are the host's kernel settings before any node ran
	// (cluster.HostKernelSettings); teardown checks they are unchanged.
	hostSettings map[string]string
}

// nodeCount: two, so that the DaemonSet runs two agents and pods talk
// across nodes.
const nodeCount = 2

// TestMain runs the tests in network and mount namespaces of their own
// (see test/sandbox): the pod network, the pods' mounts and every process
// end with the test binary, however it ends.
func TestMain(m *testing.M) {
	code := sandbox.Main(sandbox.Mount|sandbox.Network, func() int {
		code, err := setUp(m)
		if err != nil {
			fmt.Fprintln(os.Stderr, "live: setup failed:", err)
			if env.cp != nil {
				fmt.Fprintln(os.Stderr, env.cp.Logs(30))
			}
			if env.nodes != nil {
				fmt.Fprintln(os.Stderr, env.nodes.LogTails(20))
			}
			code = 1
		}
		if err := teardown(); err != nil {
			fmt.Fprintln(os.Stderr, "live:", err)
			code = 1
		}
		return code
	})
	if !sandbox.Inside() {
		// The sandboxed run has ended, however it ended: a run killed with
		// SIGKILL cleaned up nothing (see cluster.RemoveLeftNodeCgroups).
		cluster.RemoveLeftNodeCgroups()
	}
	os.Exit(code)
}

// setUp starts the shared cluster inside the sandbox and runs the tests.
func setUp(m *testing.M) (int, error) {
	// Loopback up, and 10.244.0.0/16 routed to it: every 10.244.x.y is a
	// local address inside this namespace only, for the collectors the
	// ring conformance test runs as processes of its own beside the
	// nodes (whose pods are in cluster.ClusterCIDR).
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "add", "local", "10.244.0.0/16", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	var err error
	if env.hostSettings, err = cluster.HostKernelSettings(); err != nil {
		return 0, err
	}
	binDir, err := cluster.InstallBinaries()
	if err != nil {
		return 0, err
	}
	if env.dir, err = os.MkdirTemp("", "tailgate-k8s-"); err != nil {
		return 0, err
	}
	if imageRef, err = render.BaseImage(); err != nil {
		return 0, err
	}
	// The nodes' containerd runs it: no filesystem to export.
	img, err := image.Build(imageRef, "")
	if err != nil {
		return 0, err
	}
	if env.cp, err = cluster.Start(binDir, env.dir); err != nil {
		return 0, err
	}
	start := time.Now()
	if env.nodes, err = cluster.StartNodes(env.cp, filepath.Join(env.dir, "nodes"), nodeCount, img); err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "live: %d nodes Ready in %s\n", nodeCount, time.Since(start).Round(100*time.Millisecond))
	// The pods reach the test's servers (the sink, Jaeger, a registry) at
	// its address on the node network.
	harness.IntakeHost = cluster.FabricIP
	if env.dns, err = cluster.StartDNS(env.cp); err != nil {
		return 0, err
	}
	// Pods resolve through a DNS cache on their node, as in production
	// clusters: the dns resolver's agents and gateways then see a change
	// up to a TTL apart (rebalance_test.go measures how far).
	if err := env.dns.ServeNodeCaches(env.nodes.NodeDNSIPs()); err != nil {
		return 0, err
	}
	if env.sink, err = harness.NewSink("k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.deployment.name", "k8s.node.name", "k8s.cluster.name", "tailgate.rebalance.keep", "tailsampling.policy"); err != nil {
		return 0, err
	}
	if err := applyBase(); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// clusterName is the cluster's name the tests give both tiers through the
// base's tailgate-cluster ConfigMap, as a user's overlay does.
const clusterName = "live-test"

// applyBase renders deploy/kubernetes/base, points the gateways' backend
// at the test's sink and names the cluster (what a user's overlay does),
// and applies it server-side with kubectl.
func applyBase() error {
	return applyOverlay(nil, nil)
}

// applyOverlay is applyBase with the named components of deploy/kubernetes
// and, when policies is not nil, the user's own sampling policies in place
// of the shipped ones, through an overlay as README.md tells users to
// (render.WithPolicies). Fields an earlier apply set and this one does not
// (a component's env and volumes) are removed: one field manager.
func applyOverlay(components []string, policies []byte) error {
	dir, err := os.MkdirTemp(env.dir, "overlay-")
	if err != nil {
		return err
	}
	extra := ""
	if policies != nil {
		if extra, err = render.WithPolicies(dir, policies); err != nil {
			return err
		}
	}
	objs, err := render.Overlay(dir, components, extra)
	if err != nil {
		return err
	}
	var docs []string
	for _, u := range objs {
		if u.GetKind() == "Deployment" && u.GetName() == "tailgate-gateway" {
			if err := addArgs(u, backendArg(env.sink.Endpoint())); err != nil {
				return err
			}
		}
		if err := fitTestNodes(u); err != nil {
			return err
		}
		if u.GetKind() == "ConfigMap" && strings.HasPrefix(u.GetName(), "tailgate-cluster") {
			if err := unstructured.SetNestedField(u.Object, clusterName, "data", "name"); err != nil {
				return err
			}
		}
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		docs = append(docs, string(data))
	}
	manifest := filepath.Join(dir, "applied.yaml")
	if err := os.WriteFile(manifest, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		return err
	}
	_, err = env.cp.Kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tailgate-test", "-f", manifest)
	return err
}

// backendArg is the gateways' argument that sends kept traces to endpoint
// (the test's sink or Jaeger) instead of the base's backend.
func backendArg(endpoint string) string {
	return "--set=exporters::otlp_grpc/backend_memory::endpoint=" + endpoint
}

// addArgs appends args to a rendered Deployment's container, as a user's
// kustomize patch would.
func addArgs(u *unstructured.Unstructured, args ...string) error {
	var d appsv1.Deployment
	if err := render.Strict(u, &d); err != nil {
		return err
	}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, args...)
	data, err := yaml.Marshal(&d)
	if err != nil {
		return err
	}
	u.Object = nil
	return yaml.Unmarshal(data, &u.Object)
}

// teardown stops everything and reports a host kernel setting the nodes
// changed.
func teardown() error {
	if env.nodes != nil {
		env.nodes.Stop()
	}
	if env.dns != nil {
		env.dns.Stop()
	}
	if env.cp != nil {
		env.cp.Stop()
	}
	if env.sink != nil {
		env.sink.Close()
	}
	if env.dir != "" {
		_ = os.RemoveAll(env.dir)
	}
	if env.hostSettings == nil {
		return nil
	}
	after, err := cluster.HostKernelSettings()
	if err != nil {
		return err
	}
	return cluster.CompareHostKernelSettings(env.hostSettings, after)
}

// testNodeCPURequest is the CPU the tiers' pods request here. The nodes
// have this machine's CPUs (two each), where the base's requests (a CPU a
// gateway) would leave the autoscaler's sixth gateway and a rollout's
// surge pod Pending, as on any cluster too small for them. No test reads
// CPU utilization: the HPA scales on spans per second.
const testNodeCPURequest = "100m"

// fitTestNodes lowers the tiers' CPU requests in a rendered object to
// testNodeCPURequest, as a user's patch for a small cluster would.
func fitTestNodes(u *unstructured.Unstructured) error {
	if !(u.GetKind() == "Deployment" && u.GetName() == "tailgate-gateway" || u.GetKind() == "DaemonSet" && u.GetName() == "tailgate-agent") {
		return nil
	}
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return err
	}
	for _, c := range containers {
		if err := unstructured.SetNestedField(c.(map[string]any), testNodeCPURequest, "resources", "requests", "cpu"); err != nil {
			return err
		}
	}
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// fitTestNodesValues are the chart's values that do what fitTestNodes does.
var fitTestNodesValues = []string{
	"--set", "gateway.resources.requests.cpu=" + testNodeCPURequest,
	"--set", "agent.resources.requests.cpu=" + testNodeCPURequest,
}
