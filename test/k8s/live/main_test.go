// Package live applies the Kubernetes manifests to a real control plane
// (etcd, kube-apiserver, kube-controller-manager) and runs the resulting
// pods as real tailgate processes through a process kubelet, all inside a
// network and mount namespace of the test's own: pods get 10.244.x.y
// addresses on that namespace's loopback, and nothing leaves it.
//
// The control plane, nodes and the applied base are shared by the tests of
// one run; TestMain stops everything at the end, also after a failure.
package live

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	cp      *cluster.ControlPlane
	kubelet *cluster.Kubelet
	sink    *harness.Sink
	dns     *cluster.ClusterDNS
	dir     string
	image   *image.Image
	// hostSettings are the host's kernel settings before any node ran
	// (cluster.HostKernelSettings); teardown checks they are unchanged.
	hostSettings map[string]string
	// real are the real nodes, started by the first test that needs them
	// (realNodes).
	real struct {
		once   sync.Once
		fabric *cluster.Fabric
		err    error
	}
}

// TestMain runs the tests in network and mount namespaces of their own
// (see test/sandbox): the pod network, the pods' mounts and every process
// end with the test binary, however it ends.
func TestMain(m *testing.M) {
	os.Exit(sandbox.Main(sandbox.Mount|sandbox.Network, func() int {
		code, err := setUp(m)
		if err != nil {
			fmt.Fprintln(os.Stderr, "live: setup failed:", err)
			if env.cp != nil {
				fmt.Fprintln(os.Stderr, env.cp.Logs(30))
			}
			if env.kubelet != nil {
				fmt.Fprintln(os.Stderr, env.kubelet.LogTails(20))
			}
			code = 1
		}
		if err := teardown(); err != nil {
			fmt.Fprintln(os.Stderr, "live:", err)
			code = 1
		}
		return code
	}))
}

// setUp starts the shared cluster inside the sandbox and runs the tests.
func setUp(m *testing.M) (int, error) {
	// Loopback up, and the pod network routed to it: every 10.244.x.y is a
	// local address inside this namespace only.
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
	rootfs := filepath.Join(env.dir, "image-rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return 0, err
	}
	if imageRef, err = render.BaseImage(); err != nil {
		return 0, err
	}
	img, err := image.Build(imageRef, rootfs)
	if err != nil {
		return 0, err
	}
	env.image = img
	if env.cp, err = cluster.Start(binDir, env.dir); err != nil {
		return 0, err
	}
	if env.dns, err = cluster.StartDNS(env.cp); err != nil {
		return 0, err
	}
	if env.kubelet, err = cluster.StartKubelet(env.cp, rootfs, imageRef, img.Config.Entrypoint, env.dir, 2); err != nil {
		return 0, err
	}
	// Pods resolve through a DNS cache on their node, as in production
	// clusters: the dns resolver's agents and gateways then see a change
	// up to a TTL apart (rebalance_test.go measures how far).
	if err := env.dns.ServeNodeCaches(env.kubelet.NodeIPs()); err != nil {
		return 0, err
	}
	env.kubelet.UseNodeDNS()
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
	if env.real.fabric != nil {
		env.real.fabric.Stop()
	}
	if env.kubelet != nil {
		env.kubelet.Stop()
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
