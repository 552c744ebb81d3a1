package live

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
)

// helmRelease is the release the Helm test installs: named as the chart,
// its objects have the base's names, so it takes the base's place and the
// package's helpers (pods by name, the headless Service) serve it.
const helmRelease = "tailgate"

// TestHelmInstallUpgradeUninstall installs the chart where the base was,
// as a platform team would: `helm install` with a gateway.config that adds
// an exporter to a second backend and a processor, pods ready, traffic
// through the agents reaches both backends with every error and slow trace
// whole and the processor's attribute on the second's spans; `helm
// upgrade` with the user's own policies file, then with a changed
// gateway.config (changes the gateways read, and only they) rolls the
// gateways under traffic, every interesting trace still whole, the agents
// untouched; `helm uninstall` leaves none of the objects the release made.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	settleGateways(t, 3, "k8s")
	time.Sleep(decisionWait) // earlier tests' traces decided
	makeRoomForRelease(t)

	// What a user's values file sets here: the backend, the cluster's name,
	// and a config that adds a second backend and a processor. The image is
	// the chart's default, the release's, which the suite built locally.
	second, err := harness.NewSink(releaseAttribute)
	require.NoError(t, err)
	t.Cleanup(second.Close)
	values := append([]string{
		"--set", "clusterName=" + clusterName,
		"--set-json", "gateway.config=" + gatewayConfig(env.sink.Endpoint(), second.Endpoint(), "helm-install"),
	}, fitTestNodesValues...)
	start := time.Now()
	notes, err := helmCmd(append([]string{"install", helmRelease, render.ChartDir(), "--wait", "--timeout", "5m"}, values...)...)
	require.NoError(t, err)
	installed := time.Since(start)
	// The chart leaves the gateway count to its HPA, which brings the new
	// Deployment to its minimum.
	settleGateways(t, 3, "k8s")
	_, err = env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
	require.NoError(t, err)
	t.Logf("REPORT helm: install returned after %s; 3 gateways and 2 agents ready, every agent's ring complete, %s after the install started",
		installed.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	// The pods serving now are the release's, not the base's.
	for _, name := range []string{"tailgate-gateway", "tailgate-agent"} {
		for _, p := range readyPods(t, name) {
			assert.Equal(t, helmRelease, p.Labels["app.kubernetes.io/instance"], "pod %s is not the release's", p.Name)
			assert.Equal(t, "Helm", p.Labels["app.kubernetes.io/managed-by"], "pod %s", p.Name)
		}
	}
	// Both OTLP endpoints, each with the SDK setting that picks it.
	assert.Contains(t, notes, "OTEL_EXPORTER_OTLP_ENDPOINT=http://tailgate-agent."+namespace+".svc:4318", "NOTES.txt gives the OTLP/HTTP endpoint")
	assert.Contains(t, notes, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n    OTEL_EXPORTER_OTLP_ENDPOINT=http://tailgate-agent."+namespace+".svc:4317", "NOTES.txt gives the OTLP/gRPC endpoint with its protocol setting")
	assert.Contains(t, notes, "monitoring.dashboard.enabled", "NOTES.txt tells where the dashboard is")

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 1201, 2, 30, 30*20
	gen.ErrorRatio, gen.SlowRatio = 0.15, 0.15
	first, err := harness.Plan(gen)
	require.NoError(t, err)
	sent := sendThroughAgents(t, first, nil)
	requireWhole(t, "helm install", first, sent)
	requireWholeAt(t, "helm install, the config's second backend", first, sent, second)
	requireClusterName(t, first)
	requireReleaseAttribute(t, second, first, "helm-install")

	t.Run("upgrade with the user's policies rolls the gateways under traffic", func(t *testing.T) {
		policies := filepath.Join(t.TempDir(), "policies.yaml")
		require.NoError(t, os.WriteFile(policies, []byte(usersPolicies), 0o644))
		gatewaysBefore := podNames(t, "app.kubernetes.io/name=tailgate-gateway")
		agentsBefore := podNames(t, "app.kubernetes.io/name=tailgate-agent")

		gen.Seed, gen.Traces = 1202, 30*75
		during, err := harness.Plan(gen)
		require.NoError(t, err)
		sent, r := rollGatewaysUnderTraffic(t, during, gen.Rate, func() error {
			_, err := helmCmd("upgrade", helmRelease, render.ChartDir(), "--reuse-values", "--set-file", "policies="+policies, "--wait", "--timeout", "4m")
			return err
		})
		r.report(t, "helm upgrade")
		require.NotZero(t, r.rolledOut, "the upgrade did not finish")

		for _, g := range podNames(t, "app.kubernetes.io/name=tailgate-gateway") {
			assert.NotContains(t, gatewaysBefore, g, "gateway %s was not replaced by the upgrade", g)
		}
		assert.Equal(t, agentsBefore, podNames(t, "app.kubernetes.io/name=tailgate-agent"), "the agents read no policies: the upgrade must not roll them")
		requireWhole(t, "helm upgrade", during, sent)
	})

	t.Run("upgrade of gateway.config alone rolls the gateways under traffic", func(t *testing.T) {
		gatewaysBefore := podNames(t, "app.kubernetes.io/name=tailgate-gateway")
		agentsBefore := podNames(t, "app.kubernetes.io/name=tailgate-agent")
		gen.Seed, gen.Traces = 1203, 30*75
		during, err := harness.Plan(gen)
		require.NoError(t, err)
		sent, r := rollGatewaysUnderTraffic(t, during, gen.Rate, func() error {
			_, err := helmCmd("upgrade", helmRelease, render.ChartDir(), "--reuse-values",
				"--set-json", "gateway.config="+gatewayConfig(env.sink.Endpoint(), second.Endpoint(), "helm-upgrade"), "--wait", "--timeout", "4m")
			return err
		})
		r.report(t, "helm upgrade of gateway.config")
		require.NotZero(t, r.rolledOut, "the upgrade did not finish")
		for _, g := range podNames(t, "app.kubernetes.io/name=tailgate-gateway") {
			assert.NotContains(t, gatewaysBefore, g, "gateway %s was not replaced by the upgrade", g)
		}
		assert.Equal(t, agentsBefore, podNames(t, "app.kubernetes.io/name=tailgate-agent"), "gateway.config is the gateways': the upgrade must not roll the agents")
		requireWhole(t, "helm upgrade of gateway.config", during, sent)
		requireWholeAt(t, "helm upgrade of gateway.config, the second backend", during, sent, second)
	})

	t.Run("uninstall leaves none of its objects", func(t *testing.T) {
		manifest, err := helmCmd("get", "manifest", helmRelease)
		require.NoError(t, err)
		made, err := render.Objects([]byte(manifest))
		require.NoError(t, err)
		require.NotEmpty(t, made)
		start := time.Now()
		_, err = helmCmd("uninstall", helmRelease, "--wait", "--timeout", "3m")
		require.NoError(t, err)
		eventually(t, 2*time.Minute, "no pod of the release left", func() (bool, string) {
			left := podNames(t, "app.kubernetes.io/instance="+helmRelease)
			return len(left) == 0, strings.Join(left, ", ")
		})
		t.Logf("REPORT helm uninstall: %d objects and every pod gone %s after the uninstall started", len(made), time.Since(start).Round(100*time.Millisecond))
		var left []string
		for _, u := range made {
			args := []string{"get", resourceOf(u.GetKind(), u.GetAPIVersion()), u.GetName(), "--ignore-not-found", "-o", "name"}
			if u.GetNamespace() != "" {
				args = append(args, "-n", u.GetNamespace())
			}
			out, err := env.cp.Kubectl(args...)
			require.NoError(t, err)
			if strings.TrimSpace(out) != "" {
				left = append(left, strings.TrimSpace(out))
			}
		}
		assert.Empty(t, left, "objects the release made are still there")
		_, err = helmCmd("status", helmRelease)
		require.Error(t, err, "the release is still recorded")
		assert.Contains(t, err.Error(), "not found")
	})
}

// helmCmd runs the pinned Helm CLI against the test control plane, in the
// package's namespace.
func helmCmd(args ...string) (string, error) {
	return render.Helm(append(args, "--kubeconfig", env.cp.Kubeconfig, "--namespace", namespace)...)
}

// makeRoomForRelease removes the base for a Helm release of the test's,
// and when the test ends, also after a failure, uninstalls the release and
// brings the base back.
func makeRoomForRelease(t *testing.T) {
	t.Helper()
	removeBase(t)
	t.Cleanup(func() {
		_, _ = helmCmd("uninstall", helmRelease, "--wait", "--timeout", "3m", "--ignore-not-found")
		require.NoError(t, applyBase())
		_, err := env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
		assert.NoError(t, err)
		settleGateways(t, 3, "k8s")
	})
}

// removeBase deletes every object of the base but its Namespace, and waits
// until its pods are gone: what a team moving from kustomize to Helm does.
func removeBase(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	objs, err := render.Overlay(dir, nil, "")
	require.NoError(t, err)
	var docs []string
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			continue
		}
		data, err := yaml.Marshal(u.Object)
		require.NoError(t, err)
		docs = append(docs, string(data))
	}
	manifest := filepath.Join(dir, "base.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte(strings.Join(docs, "---\n")), 0o644))
	_, err = env.cp.Kubectl("delete", "-f", manifest, "--ignore-not-found", "--wait=false")
	require.NoError(t, err)
	eventually(t, 3*time.Minute, "the base's pods gone", func() (bool, string) {
		left := podNames(t, "app.kubernetes.io/part-of=tailgate")
		return len(left) == 0, strings.Join(left, ", ")
	})
}

func podNames(t *testing.T, selector string) []string {
	t.Helper()
	var out []string
	for _, p := range pods(t, selector) {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// requireClusterName: the release's clusterName value reached the spans
// (the cluster ConfigMap, through both tiers).
func requireClusterName(t *testing.T, plans []harness.TracePlan) {
	t.Helper()
	for _, p := range plans {
		if p.Kind != harness.Error {
			continue
		}
		v, ok := env.sink.ResourceAttr(p.Spans[0].SpanID, "k8s.cluster.name")
		require.True(t, ok, "an error trace's span without k8s.cluster.name")
		assert.Equal(t, clusterName, v)
		return
	}
	t.Fatal("no error trace planned")
}

// resourceOf names a kind for kubectl, with its API group (kind.group;
// the kind alone for the core group).
func resourceOf(kind, apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return strings.ToLower(kind) + "." + g
	}
	return strings.ToLower(kind)
}

// releaseAttribute is the attribute the Helm test's gateway.config sets on
// every kept span, with the release step as its value.
const releaseAttribute = "deployment.release"

// gatewayConfig is the gateway.config of the Helm test: an OTLP exporter
// to a second backend beside the primary, and an attributes processor
// after tail_sampling that sets releaseAttribute to step.
func gatewayConfig(firstEndpoint, secondEndpoint, step string) string {
	return `{"processors":{"attributes/release":{"actions":[{"key":"` + releaseAttribute + `","value":"` + step + `","action":"upsert"}]}},` +
		`"exporters":{"otlp_grpc/backend_memory":{"endpoint":"` + firstEndpoint + `"},"otlp_grpc/second":{"endpoint":"` + secondEndpoint + `","tls":{"insecure":true}}},` +
		`"service":{"pipelines":{"traces/sampling":{"processors":["rebalance_guard/k8s","tail_sampling","attributes/release","batch"],` +
		`"exporters":["otlp_grpc/backend_memory","otlp_grpc/second"]}}}}`
}

// requireReleaseAttribute: the kept spans of plans at backend carry the
// config's attribute with the step's value.
func requireReleaseAttribute(t *testing.T, backend *harness.Sink, plans []harness.TracePlan, step string) {
	t.Helper()
	for _, p := range plans {
		if p.Kind != harness.Error {
			continue
		}
		v, ok := backend.SpanAttr(p.Spans[0].SpanID, releaseAttribute)
		require.True(t, ok, "a kept span without %s: the config's processor did not run", releaseAttribute)
		assert.Equal(t, step, v)
		return
	}
	t.Fatal("no error trace planned")
}
