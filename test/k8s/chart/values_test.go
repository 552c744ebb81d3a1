package chart

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// TestChartLints: `helm lint --strict` passes with the defaults and with
// every variant's values (the schema included).
func TestChartLints(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := render.Helm(append([]string{"lint", "--strict", render.ChartDir()}, setArgs(v.set)...)...)
			require.NoError(t, err, out)
			assert.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

// TestSchemaRefusesBadValues: values.schema.json refuses unknown keys (at
// every level: a misspelt key would otherwise be ignored and its default
// run) and wrong types or values, and the refusal names the key.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		names string // the refusal: where, and what
	}{
		{"unknown top-level key", []string{"--set", "autoscale.mode=cpu"}, "at '': additional properties 'autoscale' not allowed"},
		{"misspelt nested key", []string{"--set", "gateway.replicas=5"}, "at '/gateway': additional properties 'replicas' not allowed"},
		{"misspelt deep key", []string{"--set", "monitoring.dashboard.enable=true"}, "at '/monitoring/dashboard': additional properties 'enable' not allowed"},
		{"string for an integer", []string{"--set-string", "gateway.replicaCount=lots"}, "at '/gateway/replicaCount': got string, want integer"},
		{"integer for a boolean", []string{"--set", "mtls.enabled=1"}, "at '/mtls/enabled': got number, want boolean"},
		// Retired values (docs/configuration.md, "Migrating from
		// environment variables"): refused by name, not ignored.
		{"a retired value", []string{"--set", "sampling.decisionWait=10s"}, "at '': additional properties 'sampling' not allowed"},
		{"value outside the enum", []string{"--set", "autoscaling.mode=sometimes"}, "at '/autoscaling/mode': value must be one of"},
		{"resolver outside the enum", []string{"--set", "resolver=static"}, "at '/resolver': value must be one of"},
		{"resources without a memory request", []string{"--set", "gateway.resources.requests.memory=null"}, "at '/gateway/resources/requests': missing property 'memory'"},
		{"percentage above 100", []string{"--set", "autoscaling.targetCPUUtilizationPercentage=150"}, "at '/autoscaling/targetCPUUtilizationPercentage': maximum: got 150, want 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := render.Helm(append([]string{"template", release, render.ChartDir()}, c.args...)...)
			require.Error(t, err, "the chart rendered with %v:\n%.300s", c.args, out)
			assert.Contains(t, err.Error(), "values don't meet the specifications of the schema", "not the schema's refusal")
			assert.Contains(t, err.Error(), c.names, "the refusal does not name the key")
		})
	}
}

// TestValuesAreDescribedAndDocumented: every key of values.yaml is in the
// schema with a description, every key of the schema is in values.yaml, and
// docs/install.md's values table lists exactly the leaves of values.yaml.
func TestValuesAreDescribedAndDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(render.ChartDir(), "values.yaml"))
	require.NoError(t, err)
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(data, &values))
	data, err = os.ReadFile(filepath.Join(render.ChartDir(), "values.schema.json"))
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(data, &schema))

	valueLeaves := leaves("", values)
	schemaLeaves := schemaLeaves(t, "", schema)
	assert.ElementsMatch(t, valueLeaves, slices.DeleteFunc(slices.Clone(schemaLeaves), func(k string) bool { return k == "global" }),
		"values.yaml and values.schema.json list other keys")

	section, err := docs.Section("docs/install.md", "### Chart values")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9.]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	assert.ElementsMatch(t, valueLeaves, documented, "docs/install.md's chart values table and values.yaml")
}

// leaves are the dotted paths of a values document's leaves (a map with
// entries is walked; a scalar, list or empty map is a leaf).
func leaves(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || slices.Contains(wholeValues, prefix) {
		return []string{prefix}
	}
	var out []string
	for k, e := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out = append(out, leaves(p, e)...)
	}
	return out
}

// wholeValues are values documented as one leaf although they are maps
// (a container's resources and security contexts, as in a pod spec): both
// walks stop there.
var wholeValues = []string{
	"gateway.resources", "agent.resources",
	"gateway.podSecurityContext", "agent.podSecurityContext", "gateway.securityContext", "agent.securityContext",
}

// schemaLeaves walks a schema's closed objects (additionalProperties false)
// and requires a description of every leaf.
func schemaLeaves(t *testing.T, prefix string, s map[string]any) []string {
	props, closed := s["properties"].(map[string]any)
	if !closed || s["additionalProperties"] != false || slices.Contains(wholeValues, prefix) {
		assert.NotEmpty(t, s["description"], "values.schema.json: %s has no description", prefix)
		return []string{prefix}
	}
	var out []string
	for k, e := range props {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out = append(out, schemaLeaves(t, p, e.(map[string]any))...)
	}
	return out
}

// TestConfigChangesRollThePods: a change to what a tier reads changes its
// pod template (checksum/config), so the Deployment or DaemonSet rolls
// onto it, and a change to what it does not read leaves it alone: new
// policies or a new profile value roll the gateways only, a new cluster
// name both tiers.
func TestConfigChangesRollThePods(t *testing.T) {
	policies := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(policies, []byte("- name: everything\n  type: always_sample\n"), 0o644))
	cases := []struct {
		name                       string
		args                       []string
		rollsGateways, rollsAgents bool
	}{
		{"new policies", []string{"--set-file", "policies=" + policies}, true, false},
		{"a gateway value", []string{"--set", "gateway.config.processors.tail_sampling.decision_wait=15s"}, true, false},
		{"the cluster's name", []string{"--set", "clusterName=prod-eu"}, true, true},
		{"an agent value", []string{"--set", "agent.config.service.telemetry.logs.level=debug"}, false, true},
		{"the gateways' config", []string{"--set-json", `gateway.config={"exporters":{"debug":{}}}`}, true, false},
		{"the agents' config", []string{"--set-json", `agent.config={"processors":{"batch":{"timeout":"1s"}}}`}, false, true},
	}
	before := tiers(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			after := tiers(t, c.args...)
			assert.Equal(t, c.rollsGateways, !equalTemplates(before.gateway.Spec.Template, after.gateway.Spec.Template), "gateway pod template changed")
			assert.Equal(t, c.rollsAgents, !equalTemplates(before.agent.Spec.Template, after.agent.Spec.Template), "agent pod template changed")
		})
	}
	t.Run("the overlay ConfigMap holds the config value, which validates merged over the profile", func(t *testing.T) {
		config := `{"exporters":{"otlp_http/vendor":{"endpoint":"https://otlp.example.com","headers":{"x-api-key":"${env:VENDOR_API_KEY}"}}},` +
			`"processors":{"attributes/pii":{"actions":[{"key":"enduser.id","action":"delete"}]}},` +
			`"service":{"pipelines":{"traces/sampling":{"processors":["rebalance_guard/dns","tail_sampling","attributes/pii","batch"],"exporters":["otlp_http/vendor"]}}}}`
		objs, err := render.Chart(release, namespace, "--set-json", "gateway.config="+config)
		require.NoError(t, err)
		overlay := ""
		for _, u := range objs {
			if u.GetKind() == "ConfigMap" && strings.HasSuffix(u.GetName(), "-gateway-overlay") {
				var cm corev1.ConfigMap
				require.NoError(t, render.Strict(u, &cm))
				overlay = cm.Data["gateway-overlay.yaml"]
			}
		}
		require.Contains(t, overlay, "otlp_http/vendor")
		path := filepath.Join(t.TempDir(), "gateway-overlay.yaml")
		require.NoError(t, os.WriteFile(path, []byte(overlay), 0o644))
		bin, err := harness.BinaryPath()
		require.NoError(t, err)
		cmd := exec.Command(bin, "validate", "--config", harness.ProfilePath("gateway"), "--config", path)
		cmd.Env = harness.Environ(nil)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the chart's overlay merged over the profile: %s", out)
	})
	t.Run("the gateways' overlay holds the user's policies", func(t *testing.T) {
		objs, err := render.Chart(release, namespace, "--set-file", "policies="+policies)
		require.NoError(t, err)
		for _, u := range objs {
			if u.GetKind() == "ConfigMap" && u.GetName() == render.GatewayOverlayConfigMap {
				var cm corev1.ConfigMap
				require.NoError(t, render.Strict(u, &cm))
				var overlay map[string]any
				require.NoError(t, yaml.Unmarshal([]byte(cm.Data[render.GatewayOverlayKey]), &overlay))
				assert.Equal(t, []any{map[string]any{"name": "everything", "type": "always_sample"}},
					profile.Get(overlay, "processors", "tail_sampling", "policies"))
				return
			}
		}
		t.Fatalf("no ConfigMap %s", render.GatewayOverlayConfigMap)
	})
}

type rendered struct {
	gateway appsv1.Deployment
	agent   appsv1.DaemonSet
}

func tiers(t *testing.T, args ...string) rendered {
	t.Helper()
	objs, err := render.Chart(release, namespace, args...)
	require.NoError(t, err)
	var r rendered
	for _, u := range objs {
		switch u.GetKind() {
		case "Deployment":
			require.NoError(t, render.Strict(u, &r.gateway))
		case "DaemonSet":
			require.NoError(t, render.Strict(u, &r.agent))
		}
	}
	return r
}

func equalTemplates(a, b corev1.PodTemplateSpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestValuesReachTheTiers: each value reaches the setting it names, in the
// configuration the binary runs the profile with (tailgate print-config
// of the profile and the rendered overlay ConfigMap, under the container's
// environment as rendered): a misspelt key or variable in the chart, or a
// profile that stopped reading one, fails here.
func TestValuesReachTheTiers(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		profile string
		path    []string
		want    any
	}{
		{"config: decision wait, the guard following", []string{"--set", "gateway.config.processors.tail_sampling.decision_wait=17s"}, "gateway", []string{"processors", "rebalance_guard/k8s", "decision_wait"}, "17s"},
		{"config: num traces, the guard following", []string{"--set", "gateway.config.processors.tail_sampling.num_traces=12345"}, "gateway", []string{"processors", "rebalance_guard/k8s", "num_traces"}, 12345},
		{"config: guard off", []string{"--set", "gateway.config.processors.rebalance_guard/k8s.enabled=false"}, "gateway", []string{"processors", "rebalance_guard/k8s", "enabled"}, false},
		{"config: backend endpoint", []string{"--set", "gateway.config.exporters.otlp_grpc/backend_memory.endpoint=tempo.tracing:4317"}, "gateway", []string{"exporters", "otlp_grpc/backend_memory", "endpoint"}, "tempo.tracing:4317"},
		{"config: several backends", []string{"--set", "gateway.config.service.pipelines.traces/sampling.exporters={otlp_grpc/backend_memory,otlp_grpc/backend_secondary}"}, "gateway", []string{"service", "pipelines", "traces/sampling", "exporters"}, []any{"otlp_grpc/backend_memory", "otlp_grpc/backend_secondary"}},
		{"config: gateway log level", []string{"--set", "gateway.config.service.telemetry.logs.level=debug"}, "gateway", []string{"service", "telemetry", "logs", "level"}, "debug"},
		{"config: agent log level", []string{"--set", "agent.config.service.telemetry.logs.level=warn"}, "agent", []string{"service", "telemetry", "logs", "level"}, "warn"},
		{"dns resolver, gateways", []string{"--set", "resolver=dns"}, "gateway", []string{"processors", "rebalance_guard/dns", "resolver", "dns", "hostname"}, "tailgate-gateway-headless.observability.svc.cluster.local"},
		{"dns resolver, agents", []string{"--set", "resolver=dns"}, "agent", []string{"exporters", "load_balancing/dns", "resolver", "dns", "hostname"}, "tailgate-gateway-headless.observability.svc.cluster.local"},
		{"extra env", []string{"--set", "gateway.extraEnvs[0].name=TAILGATE_GATEWAY_OTLP_PORT", "--set", "gateway.extraEnvs[0].value=4999"}, "gateway", []string{"receivers", "otlp", "protocols", "grpc", "endpoint"}, "[127.0.0.1]:4999"},
		{"extra env wins over the chart's", []string{"--set", "gateway.extraEnvs[0].name=TAILGATE_GATEWAY_RESOLVER", "--set", "gateway.extraEnvs[0].value=dns"}, "gateway", []string{"service", "pipelines", "traces/sampling", "processors"}, []any{"rebalance_guard/dns", "tail_sampling", "filter/rebalance_guard_dns_markers", "batch"}},
		{"agent extra env wins", []string{"--set", "agent.extraEnvs[0].name=TAILGATE_GATEWAY_RESOLVER", "--set", "agent.extraEnvs[0].value=dns"}, "agent", []string{"service", "pipelines", "traces", "exporters"}, []any{"load_balancing/dns"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := containerEnv(t, c.profile, c.args...)
			overlay := filepath.Join(t.TempDir(), c.profile+"-overlay.yaml")
			require.NoError(t, os.WriteFile(overlay, []byte(overlayOf(t, c.profile, c.args...)), 0o644))
			cfg, err := profile.EffectiveWith(c.profile, env, []string{overlay})
			require.NoError(t, err)
			got := profile.Get(cfg, c.path...)
			if n, ok := got.(float64); ok { // YAML numbers decode as float64 or int
				got = int(n)
			}
			assert.EqualValues(t, c.want, got, "%s with %v", strings.Join(c.path, "."), c.args)
		})
	}
}

// overlayOf is the overlay the chart gives a tier with args (its
// <release>-<tier>-overlay ConfigMap).
func overlayOf(t *testing.T, tier string, args ...string) string {
	t.Helper()
	objs, err := render.Chart(release, namespace, args...)
	require.NoError(t, err)
	for _, u := range objs {
		if u.GetKind() == "ConfigMap" && u.GetName() == release+"-"+tier+"-overlay" {
			var cm corev1.ConfigMap
			require.NoError(t, render.Strict(u, &cm))
			return cm.Data[tier+"-overlay.yaml"]
		}
	}
	t.Fatalf("no ConfigMap %s-%s-overlay", release, tier)
	return ""
}

// containerEnv is the literal environment the chart gives a tier's
// container with args (valueFrom variables left out: the kubelet resolves
// them).
func containerEnv(t *testing.T, tier string, args ...string) map[string]string {
	t.Helper()
	r := tiers(t, args...)
	spec := r.gateway.Spec.Template.Spec
	if tier == "agent" {
		spec = r.agent.Spec.Template.Spec
	}
	env, seen := map[string]string{}, map[string]bool{}
	for _, e := range spec.Containers[0].Env {
		// Server-side apply (Helm 4's default) refuses a name twice.
		require.False(t, seen[e.Name], "%s twice in the %s's env", e.Name, tier)
		seen[e.Name] = true
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// TestModesWithoutAComponent: what no kustomize component builds, and so
// no equivalence checks: autoscaling off (no HPA, gateway.replicaCount
// gateways) and mTLS with Secrets of the user's own (no cert-manager
// objects, the named Secrets mounted).
func TestModesWithoutAComponent(t *testing.T) {
	t.Run("autoscaling off", func(t *testing.T) {
		objs, err := render.Chart(release, namespace, "--set", "autoscaling.mode=off", "--set", "gateway.replicaCount=5")
		require.NoError(t, err)
		kinds := map[string]bool{}
		for _, u := range objs {
			kinds[u.GetKind()] = true
		}
		assert.False(t, kinds["HorizontalPodAutoscaler"], "an HPA with autoscaling off")
		r := tiers(t, "--set", "autoscaling.mode=off", "--set", "gateway.replicaCount=5")
		require.NotNil(t, r.gateway.Spec.Replicas)
		assert.EqualValues(t, 5, *r.gateway.Spec.Replicas)
	})
	t.Run("mtls with the user's Secrets", func(t *testing.T) {
		args := []string{"--set", "mtls.enabled=true", "--set", "mtls.certManager=false", "--set", "mtls.gatewaySecretName=gw-tls", "--set", "mtls.agentSecretName=ag-tls"}
		objs, err := render.Chart(release, namespace, args...)
		require.NoError(t, err)
		for _, u := range objs {
			assert.NotEqual(t, "cert-manager.io/v1", u.GetAPIVersion(), "%s %s without cert-manager", u.GetKind(), u.GetName())
		}
		r := tiers(t, args...)
		secretOf := func(spec corev1.PodSpec) string {
			for _, v := range spec.Volumes {
				if v.Name == "tls" && v.Secret != nil {
					return v.Secret.SecretName
				}
			}
			return ""
		}
		assert.Equal(t, "gw-tls", secretOf(r.gateway.Spec.Template.Spec))
		assert.Equal(t, "ag-tls", secretOf(r.agent.Spec.Template.Spec))
	})
}

// TestUpstreamChartValuesReachTheObjects: the values named as in the
// upstream opentelemetry-collector chart land where that chart puts them.
func TestUpstreamChartValuesReachTheObjects(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name       string
		args       []string
		kind, obj  string // the object: kind and name suffix
		path       []string
		want       any // numbers as YAML decodes them here: float64
		wantAbsent bool
	}{
		{"image.digest", []string{"--set", "image.digest=" + digest}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "containers", "0", "image"}, "ghcr.io/tailgate-dev/tailgate@" + digest, false},
		{"nameOverride", []string{"--set", "nameOverride=tg"}, "Deployment", "tailgate-tg-gateway",
			[]string{"metadata", "name"}, "tailgate-tg-gateway", false},
		{"podLabels", []string{"--set", "gateway.podLabels.team=observability"}, "Deployment", "-gateway",
			[]string{"spec", "template", "metadata", "labels", "team"}, "observability", false},
		{"priorityClassName", []string{"--set", "agent.priorityClassName=node-critical"}, "DaemonSet", "-agent",
			[]string{"spec", "template", "spec", "priorityClassName"}, "node-critical", false},
		{"command.extraArgs", []string{"--set", "gateway.command.extraArgs[0]=--feature-gates=+exporter.xyz"}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "containers", "0", "args", "5"}, "--feature-gates=+exporter.xyz", false},
		{"extraEnvsFrom", []string{"--set", "gateway.extraEnvsFrom[0].secretRef.name=vendor"}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "containers", "0", "envFrom", "0", "secretRef", "name"}, "vendor", false},
		{"affinity replaces the default", []string{"--set-json", `gateway.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["obs"]}]}]}}}`}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "affinity", "podAntiAffinity"}, nil, true},
		{"topologySpreadConstraints replace the default", []string{"--set-json", `gateway.topologySpreadConstraints=[{"maxSkew":2,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule"}]`}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "topologySpreadConstraints", "0", "maxSkew"}, float64(2), false},
		{"podSecurityContext", []string{"--set", "agent.podSecurityContext.runAsUser=20002"}, "DaemonSet", "-agent",
			[]string{"spec", "template", "spec", "securityContext", "runAsUser"}, float64(20002), false},
		{"mTLS adds the agents' fsGroup to their podSecurityContext", []string{"--set", "mtls.enabled=true"}, "DaemonSet", "-agent",
			[]string{"spec", "template", "spec", "securityContext", "fsGroup"}, float64(10001), false},
		{"securityContext", []string{"--set", "gateway.securityContext.readOnlyRootFilesystem=false"}, "Deployment", "-gateway",
			[]string{"spec", "template", "spec", "containers", "0", "securityContext", "readOnlyRootFilesystem"}, false, false},
		{"autoscaling.behavior", []string{"--set", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds=60"}, "HorizontalPodAutoscaler", "-gateway",
			[]string{"spec", "behavior", "scaleDown", "stabilizationWindowSeconds"}, float64(60), false},
		{"serviceMonitor.extraLabels", []string{"--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.extraLabels.release=kube-prometheus-stack"}, "ServiceMonitor", "tailgate",
			[]string{"metadata", "labels", "release"}, "kube-prometheus-stack", false},
		{"serviceAccount.annotations", []string{"--set", "gateway.serviceAccount.annotations.iam\\.example\\.com/role=tailgate"}, "ServiceAccount", "-gateway",
			[]string{"metadata", "annotations", "iam.example.com/role"}, "tailgate", false},
		{"serviceAccount.name binds the RBAC", []string{"--set", "agent.serviceAccount.create=false", "--set", "agent.serviceAccount.name=platform-agents"}, "ClusterRoleBinding", "-agent",
			[]string{"subjects", "0", "name"}, "platform-agents", false},
		{"serviceAccount.name runs the pods", []string{"--set", "agent.serviceAccount.create=false", "--set", "agent.serviceAccount.name=platform-agents"}, "DaemonSet", "-agent",
			[]string{"spec", "template", "spec", "serviceAccountName"}, "platform-agents", false},
		{"prometheusRule.extraLabels", []string{"--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.prometheusRule.extraLabels.release=kube-prometheus-stack"}, "PrometheusRule", "tailgate",
			[]string{"metadata", "labels", "release"}, "kube-prometheus-stack", false},
		{"podMonitor.extraLabels", []string{"--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.podMonitor.extraLabels.release=kube-prometheus-stack"}, "PodMonitor", "tailgate",
			[]string{"metadata", "labels", "release"}, "kube-prometheus-stack", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := render.Chart(release, namespace, c.args...)
			require.NoError(t, err)
			for _, u := range objs {
				if u.GetKind() != c.kind || !strings.HasSuffix(u.GetName(), c.obj) {
					continue
				}
				got := profile.Get(u.Object, c.path...)
				if c.wantAbsent {
					assert.Nil(t, got, "%s %s: %v is set", c.kind, u.GetName(), c.path)
				} else {
					assert.Equal(t, c.want, got, "%s %s: %v", c.kind, u.GetName(), c.path)
				}
				return
			}
			t.Fatalf("no %s named *%s", c.kind, c.obj)
		})
	}
}

// TestGOMEMLIMITIsMemoryLimitersSoftLimit: for any requests/limits pair a
// user sets, requests equal to limits included, each tier's GOMEMLIMIT is
// exactly memory_limiter's soft limit of its profile ((limit_percentage -
// spike_limit_percentage)% of limits.memory), so the Go runtime collects
// before garbage can make memory_limiter refuse data.
func TestGOMEMLIMITIsMemoryLimitersSoftLimit(t *testing.T) {
	pairs := []struct{ request, limit string }{
		{"2Gi", "2Gi"}, {"1Gi", "2Gi"}, {"256Mi", "4Gi"}, {"3G", "3G"}, {"1536Mi", "1536Mi"}, {"1Gi", "1.5Gi"},
	}
	for _, tier := range []struct{ name, kind, profile string }{{"gateway", "Deployment", "gateway"}, {"agent", "DaemonSet", "agent"}} {
		raw, err := profile.Raw(tier.profile)
		require.NoError(t, err)
		limitPct, _ := profile.Get(raw, "processors", "memory_limiter", "limit_percentage").(int)
		spikePct, _ := profile.Get(raw, "processors", "memory_limiter", "spike_limit_percentage").(int)
		require.Positive(t, limitPct-spikePct, "%s profile: memory_limiter's percentages", tier.profile)
		for _, p := range pairs {
			t.Run(tier.name+"/"+p.request+"-"+p.limit, func(t *testing.T) {
				objs, err := render.Chart(release, namespace,
					"--set", tier.name+".resources.requests.memory="+p.request, "--set", tier.name+".resources.limits.memory="+p.limit)
				require.NoError(t, err)
				limit := resource.MustParse(p.limit)
				softLimit := limit.Value() * int64(limitPct-spikePct) / 100
				for _, u := range objs {
					if u.GetKind() != tier.kind {
						continue
					}
					env, _ := profile.Get(u.Object, "spec", "template", "spec", "containers", "0", "env").([]any)
					for _, e := range env {
						if e := e.(map[string]any); e["name"] == "GOMEMLIMIT" {
							got, err := strconv.ParseInt(fmt.Sprint(e["value"]), 10, 64)
							require.NoError(t, err, "GOMEMLIMIT %v", e)
							assert.Equal(t, softLimit, got, "GOMEMLIMIT vs memory_limiter's soft limit of %s", p.limit)
							return
						}
					}
				}
				t.Fatalf("no GOMEMLIMIT on the %s", tier.kind)
			})
		}
	}
}

// TestPodMonitorSelectsBothTiers: the PodMonitor (monitoring.podMonitor)
// selects the pods of both tiers of this release and no other, and scrapes
// ports the containers name: internal telemetry on both, RED metrics on
// the gateways.
func TestPodMonitorSelectsBothTiers(t *testing.T) {
	objs, err := render.Chart(release, namespace, "--set", "monitoring.podMonitor.enabled=true")
	require.NoError(t, err)
	var selector *metav1.LabelSelector
	var ports []string
	for _, u := range objs {
		if u.GetKind() == "PodMonitor" {
			var spec struct {
				Spec struct {
					Selector            metav1.LabelSelector
					PodMetricsEndpoints []struct{ Port string }
				}
			}
			data, err := json.Marshal(u.Object)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(data, &spec))
			selector = &spec.Spec.Selector
			for _, e := range spec.Spec.PodMetricsEndpoints {
				ports = append(ports, e.Port)
			}
		}
	}
	require.NotNil(t, selector, "no PodMonitor")
	sel, err := metav1.LabelSelectorAsSelector(selector)
	require.NoError(t, err)
	r := tiers(t, "--set", "monitoring.podMonitor.enabled=true")
	named := func(spec corev1.PodSpec) map[string]bool {
		out := map[string]bool{}
		for _, p := range spec.Containers[0].Ports {
			out[p.Name] = true
		}
		return out
	}
	for tier, tmpl := range map[string]corev1.PodTemplateSpec{"gateway": r.gateway.Spec.Template, "agent": r.agent.Spec.Template} {
		assert.True(t, sel.Matches(labels.Set(tmpl.Labels)), "the PodMonitor does not select the %s pods (%v)", tier, tmpl.Labels)
		other := maps.Clone(tmpl.Labels)
		other["app.kubernetes.io/instance"] = "another-release"
		assert.False(t, sel.Matches(labels.Set(other)), "the PodMonitor selects another release's %s pods", tier)
		assert.True(t, named(tmpl.Spec)["telemetry"], "%s: no port named telemetry", tier)
	}
	assert.Equal(t, []string{"telemetry", "metrics"}, ports)
	assert.True(t, named(r.gateway.Spec.Template.Spec)["metrics"], "gateway: no port named metrics")
}
