// Package manifests checks the rendered Kubernetes manifests without a
// cluster: strict decoding into client-go types and cross-checks against
// the profiles they run. test/k8s/live applies them to a real API server.
package manifests

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// manifests is the decoded base.
type manifests struct {
	namespace    *corev1.Namespace
	serviceAccts map[string]*corev1.ServiceAccount
	clusterRoles map[string]*rbacv1.ClusterRole
	roleBindings map[string]*rbacv1.ClusterRoleBinding
	roles        map[string]*rbacv1.Role
	nsBindings   map[string]*rbacv1.RoleBinding
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	agent        *appsv1.DaemonSet
	gateway      *appsv1.Deployment
	hpa          *autoscalingv2.HorizontalPodAutoscaler
	pdb          *policyv1.PodDisruptionBudget
}

// decodeNamed decodes u strictly into a new T, kept in into by name.
func decodeNamed[T any](u *unstructured.Unstructured, into map[string]*T) error {
	o := new(T)
	into[u.GetName()] = o
	return render.Strict(u, o)
}

func load(t *testing.T) *manifests {
	t.Helper()
	out, err := render.Build(render.BaseDir())
	require.NoError(t, err)
	objs, err := render.Objects(out)
	require.NoError(t, err)
	m := &manifests{
		serviceAccts: map[string]*corev1.ServiceAccount{}, clusterRoles: map[string]*rbacv1.ClusterRole{},
		roleBindings: map[string]*rbacv1.ClusterRoleBinding{}, configMaps: map[string]*corev1.ConfigMap{},
		roles: map[string]*rbacv1.Role{}, nsBindings: map[string]*rbacv1.RoleBinding{},
		services: map[string]*corev1.Service{},
	}
	for _, u := range objs {
		var err error
		switch u.GetKind() {
		case "Namespace":
			m.namespace = &corev1.Namespace{}
			err = render.Strict(u, m.namespace)
		case "ServiceAccount":
			err = decodeNamed(u, m.serviceAccts)
		case "ClusterRole":
			err = decodeNamed(u, m.clusterRoles)
		case "ClusterRoleBinding":
			err = decodeNamed(u, m.roleBindings)
		case "Role":
			err = decodeNamed(u, m.roles)
		case "RoleBinding":
			err = decodeNamed(u, m.nsBindings)
		case "ConfigMap":
			err = decodeNamed(u, m.configMaps)
		case "Service":
			err = decodeNamed(u, m.services)
		case "DaemonSet":
			require.Nil(t, m.agent, "one DaemonSet expected")
			m.agent = &appsv1.DaemonSet{}
			err = render.Strict(u, m.agent)
		case "Deployment":
			require.Nil(t, m.gateway, "one Deployment expected")
			m.gateway = &appsv1.Deployment{}
			err = render.Strict(u, m.gateway)
		case "HorizontalPodAutoscaler":
			m.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			err = render.Strict(u, m.hpa)
		case "PodDisruptionBudget":
			m.pdb = &policyv1.PodDisruptionBudget{}
			err = render.Strict(u, m.pdb)
		default:
			t.Fatalf("unexpected kind %s in the base: add it to this test", u.GetKind())
		}
		require.NoError(t, err)
	}
	for _, o := range []any{m.namespace, m.agent, m.gateway, m.hpa, m.pdb} {
		require.NotNil(t, o)
	}
	return m
}

// TestManifestsDecodeStrictly: every rendered object decodes into its
// client-go type with no unknown field (load fails otherwise).
func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	assert.Len(t, m.configMaps, 5, "the two profiles, their overlays and the cluster name")
	assert.Equal(t, "observability", m.namespace.Name)
	assert.Equal(t, "restricted", m.namespace.Labels["pod-security.kubernetes.io/enforce"])
}

// workload is what the cross-checks need of the DaemonSet and Deployment.
type workload struct {
	name     string
	profile  string
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	return []workload{
		{"agent", "agent", m.agent.Spec.Selector, m.agent.Spec.Template},
		{"gateway", "gateway", m.gateway.Spec.Selector, m.gateway.Spec.Template},
	}
}

// containerEnv is the container's env as the profile will see it:
// literal values, resource references resolved as the kubelet resolves
// them, and a placeholder address for the other downward-API values.
func containerEnv(t *testing.T, c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if ref := e.ValueFrom; ref != nil && ref.ResourceFieldRef != nil {
			v, err := render.ResourceFieldValue(c, ref.ResourceFieldRef)
			require.NoError(t, err, e.Name)
			env[e.Name] = v
			continue
		}
		if e.ValueFrom != nil {
			env[e.Name] = "10.0.0.1"
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

func port(t *testing.T, endpoint any) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(fmt.Sprint(endpoint))
	require.NoError(t, err, "endpoint %v", endpoint)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return int32(n)
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func TestWorkloadsMatchTheirProfiles(t *testing.T) {
	m := load(t)
	for _, w := range m.workloads() {
		t.Run(w.name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			require.NoError(t, err)
			assert.True(t, sel.Matches(labels.Set(w.pod.Labels)), "selector does not match the pod template labels")

			spec := w.pod.Spec
			require.Len(t, spec.Containers, 1)
			c := spec.Containers[0]
			env := containerEnv(t, c)
			prof, err := profile.Effective(w.profile, env)
			require.NoError(t, err)

			// The container runs the profile from the ConfigMap generated from
			// configs/, merged with the user's overlay beside it (empty as
			// shipped: the profile's backend and policies).
			wantArgs := []string{"--config", "/etc/tailgate/" + w.profile + ".yaml", "--config", "/etc/tailgate/" + w.profile + "-overlay.yaml"}
			if w.profile == "gateway" {
				wantArgs = append(wantArgs, harness.GatewayFeatureGates)
			}
			require.Equal(t, wantArgs, c.Args)
			files := mountedConfigFiles(t, m, spec, c, "/etc/tailgate")
			want := []string{w.profile + ".yaml", w.profile + "-overlay.yaml"}
			assert.ElementsMatch(t, want, slices.Collect(maps.Keys(files)), "files in /etc/tailgate")
			for name, cmName := range files {
				file, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "configs", name))
				require.NoError(t, err)
				assert.Equal(t, string(file), m.configMaps[cmName].Data[name], "ConfigMap %s differs from configs/%s", cmName, name)
			}

			// Ports: receivers, health_check, telemetry.
			assert.Equal(t, port(t, profile.Get(prof, "receivers", "otlp", "protocols", "grpc", "endpoint")), containerPort(c, "otlp-grpc"))
			assert.Equal(t, port(t, profile.Get(prof, "receivers", "otlp", "protocols", "http", "endpoint")), containerPort(c, "otlp-http"))
			health := port(t, profile.Get(prof, "extensions", "health_check", "endpoint"))
			assert.Equal(t, health, containerPort(c, "health"))
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				require.NotNil(t, p)
				assert.Equal(t, health, containerPort(c, p.HTTPGet.Port.StrVal), "probe port")
			}
			readers := profile.Get(prof, "service", "telemetry", "metrics", "readers").([]any)
			telemetry := profile.Get(readers[0], "pull", "exporter", "prometheus", "port")
			assert.Equal(t, fmt.Sprint(telemetry), fmt.Sprint(containerPort(c, "telemetry")))
			// Everything that must be reachable binds the pod IP.
			podIP := valueFrom(c, "MY_POD_IP")
			require.True(t, podIP != nil && podIP.FieldRef != nil, "MY_POD_IP from the downward API")
			assert.Equal(t, "status.podIP", podIP.FieldRef.FieldPath)

			// Memory: GOMEMLIMIT is the container's memory request, derived
			// by the kubelet, and the request is memory_limiter's soft limit
			// (its percentages of the limit): the runtime collects before
			// garbage alone can make memory_limiter refuse data, which
			// GOGC above the default would otherwise do.
			gomem := valueFrom(c, "GOMEMLIMIT")
			require.NotNil(t, gomem, "GOMEMLIMIT from the container's memory request, not a literal")
			assert.Equal(t, &corev1.ResourceFieldSelector{ContainerName: c.Name, Resource: "requests.memory"},
				gomem.ResourceFieldRef, "GOMEMLIMIT from the container's memory request")
			limit, request := c.Resources.Limits.Memory(), c.Resources.Requests.Memory()
			require.False(t, limit.IsZero(), "no memory limit")
			require.False(t, request.IsZero(), "no memory request")
			ml := profile.Get(prof, "processors", "memory_limiter").(map[string]any)
			hard := float64(ml["limit_percentage"].(int)) / 100
			soft := hard - float64(ml["spike_limit_percentage"].(int))/100
			assert.Less(t, hard, 1.0)
			assert.InDelta(t, soft, float64(request.Value())/float64(limit.Value()), 0.005,
				"memory request / limit = memory_limiter's soft limit (limit_percentage - spike_limit_percentage)")
			gogc, err := strconv.Atoi(env["GOGC"])
			require.NoError(t, err, "GOGC %q", env["GOGC"])
			assert.GreaterOrEqual(t, gogc, 100, "GOGC below the default trades CPU for memory GOMEMLIMIT already bounds")

			// Restricted Pod Security.
			psc, sc := spec.SecurityContext, c.SecurityContext
			require.NotNil(t, psc)
			require.NotNil(t, sc)
			assert.True(t, *psc.RunAsNonRoot)
			assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
			assert.False(t, *sc.AllowPrivilegeEscalation)
			assert.True(t, *sc.ReadOnlyRootFilesystem)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
		})
	}
}

// valueFrom is where the container's variable name takes its value from;
// nil for a literal value or no such variable.
func valueFrom(c corev1.Container, name string) *corev1.EnvVarSource {
	for _, e := range c.Env {
		if e.Name == name {
			return e.ValueFrom
		}
	}
	return nil
}

func TestGatewayServicesAndScaling(t *testing.T) {
	m := load(t)
	pods := labels.Set(m.gateway.Spec.Template.Labels)
	c := m.gateway.Spec.Template.Spec.Containers[0]
	headless := m.services["tailgate-gateway-headless"]
	require.NotNil(t, headless)
	assert.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP, "the agents' resolver needs one address per pod")
	for _, svc := range []*corev1.Service{headless, m.services["tailgate-gateway"]} {
		require.NotNil(t, svc)
		assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(pods), "%s selects the gateway pods", svc.Name)
		for _, p := range svc.Spec.Ports {
			assert.NotZero(t, containerPort(c, p.TargetPort.StrVal), "%s port %s targets no container port", svc.Name, p.Name)
		}
	}

	// The agents resolve exactly this headless Service on its OTLP port.
	agentEnv := containerEnv(t, m.agent.Spec.Template.Spec.Containers[0])
	assert.Equal(t, "k8s", agentEnv["TAILGATE_GATEWAY_RESOLVER"])
	assert.Equal(t, headless.Name+"."+m.namespace.Name, agentEnv["TAILGATE_GATEWAY_K8S_SERVICE"])
	agentProf, err := profile.Effective("agent", agentEnv)
	require.NoError(t, err)
	ports := profile.Get(agentProf, "exporters", "load_balancing/k8s", "resolver", "k8s", "ports").([]any)
	assert.Equal(t, fmt.Sprint(headless.Spec.Ports[0].Port), fmt.Sprint(ports[0]))

	// The agent Service keeps traffic on the node.
	agentSvc := m.services["tailgate-agent"]
	require.NotNil(t, agentSvc)
	assert.Equal(t, corev1.ServiceInternalTrafficPolicyLocal, *agentSvc.Spec.InternalTrafficPolicy)
	assert.True(t, labels.SelectorFromSet(agentSvc.Spec.Selector).Matches(labels.Set(m.agent.Spec.Template.Labels)))

	// HPA and PDB.
	ref := m.hpa.Spec.ScaleTargetRef
	assert.Equal(t, autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: m.gateway.Name}, ref)
	assert.GreaterOrEqual(t, *m.hpa.Spec.MinReplicas, *m.gateway.Spec.Replicas)
	pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	require.NoError(t, err)
	assert.True(t, pdbSel.Matches(pods), "PDB selects the gateway pods")

	// Shutdown: preStop covers decision_wait, and fits in the grace period
	// with time left for the collector's own shutdown.
	gwProf, err := profile.Effective("gateway", containerEnv(t, c))
	require.NoError(t, err)
	decisionWait, err := time.ParseDuration(fmt.Sprint(profile.Get(gwProf, "processors", "tail_sampling", "decision_wait")))
	require.NoError(t, err)
	require.NotNil(t, c.Lifecycle.PreStop.Sleep)
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	assert.Greater(t, preStop, decisionWait)
	grace := time.Duration(*m.gateway.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.GreaterOrEqual(t, grace-preStop, 30*time.Second)

	// The persistent queue directory is a writable volume.
	dir := fmt.Sprint(profile.Get(gwProf, "extensions", "file_storage/queue", "directory"))
	writable := false
	for _, vm := range c.VolumeMounts {
		for _, v := range m.gateway.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.EmptyDir != nil && vm.MountPath == dir && !vm.ReadOnly {
				writable = true
			}
		}
	}
	assert.True(t, writable, "file_storage directory %s is not a writable volume", dir)
}

// rule is one (apiGroup, resource, verb) permission.
type rule string

func rulesOf(rs []rbacv1.PolicyRule) []rule {
	var out []rule
	for _, r := range rs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, rule(g+"/"+res+":"+v))
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// requiredRules derives a profile's API needs, as run by its workload,
// from the settings that decide them in the pinned upstream code, and
// returns them sorted:
//   - a k8s resolver (load_balancing's or rebalance_guard's) runs an
//     EndpointSlice informer: list and watch;
//   - k8s_attributes (unless passthrough) runs informers chosen in
//     k8sattributesprocessor v1.0.0 internal/kube/client.go New(): pods
//     always; namespaces only for namespace labels or annotations (the
//     cluster UID watches kube-system's namespace); replicasets for
//     k8s.deployment.uid or deployment and replicaset labels or annotations
//     (k8s.deployment.name alone comes from the ReplicaSet's name);
//     nodes for node labels, annotations or k8s.node.uid; deployments,
//     statefulsets, daemonsets, jobs and cronjobs for their own labels or
//     annotations. Informers list and watch; nothing gets.
//
// test/k8s/live checks the result against what the pods really request
// from a real API server (its audit log).
func requiredRules(t *testing.T, prof map[string]any) []rule {
	watch := []string{"list", "watch"}
	var need []rbacv1.PolicyRule
	add := func(group string, resources ...string) {
		need = append(need, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: resources, Verbs: watch})
	}
	endpointSlices := false
	for _, pl := range profile.Get(prof, "service", "pipelines").(map[string]any) {
		pipeline := pl.(map[string]any)
		procs, _ := pipeline["processors"].([]any)
		exps, _ := pipeline["exporters"].([]any)
		for _, p := range procs {
			if profile.Get(prof, "processors", fmt.Sprint(p), "resolver", "k8s") != nil &&
				fmt.Sprint(profile.Get(prof, "processors", fmt.Sprint(p), "enabled")) != "false" {
				endpointSlices = true
			}
		}
		for _, e := range exps {
			if profile.Get(prof, "exporters", fmt.Sprint(e), "resolver", "k8s") != nil {
				endpointSlices = true
			}
		}
	}
	if endpointSlices {
		add("discovery.k8s.io", "endpointslices")
	}
	pipeline, _ := profile.Get(prof, "service", "pipelines", "traces").(map[string]any)
	procs, _ := pipeline["processors"].([]any)
	for _, p := range procs {
		if p != "k8s_attributes" || fmt.Sprint(profile.Get(prof, "processors", "k8s_attributes", "passthrough")) == "true" {
			continue
		}
		extract := profile.Get(prof, "processors", "k8s_attributes", "extract")
		metadata := map[string]bool{}
		for _, m := range profile.Get(extract, "metadata").([]any) {
			metadata[fmt.Sprint(m)] = true
		}
		from := map[string]bool{}
		for _, kind := range []string{"labels", "annotations"} {
			rules, _ := profile.Get(extract, kind).([]any)
			for _, r := range rules {
				from[fmt.Sprint(profile.Get(r, "from"))] = true
			}
		}
		add("", "pods")
		if from["namespace"] || metadata["k8s.cluster.uid"] {
			add("", "namespaces")
		}
		if from["node"] || metadata["k8s.node.uid"] {
			add("", "nodes")
		}
		if metadata["k8s.deployment.uid"] || from["deployment"] || from["replicaset"] {
			add("apps", "replicasets")
		}
		for _, owner := range []string{"deployment", "statefulset", "daemonset"} {
			if from[owner] {
				add("apps", owner+"s")
			}
		}
		for _, owner := range []string{"job", "cronjob"} {
			if from[owner] {
				add("batch", owner+"s")
			}
		}
		for f := range from {
			require.Contains(t, []string{"pod", "namespace", "node", "deployment", "replicaset", "statefulset", "daemonset", "job", "cronjob"}, f,
				"k8s_attributes extracts from %q: derive its API needs here", f)
		}
	}
	return rulesOf(need)
}

func TestAgentRBACMatchesProfile(t *testing.T) {
	m := load(t)
	prof, err := profile.Effective("agent", containerEnv(t, m.agent.Spec.Template.Spec.Containers[0]))
	require.NoError(t, err)
	role := m.clusterRoles["tailgate-agent"]
	require.NotNil(t, role)
	assert.Equal(t, requiredRules(t, prof), rulesOf(role.Rules), "ClusterRole rules vs what configs/agent.yaml uses")

	binding := m.roleBindings["tailgate-agent"]
	require.NotNil(t, binding)
	assert.Equal(t, role.Name, binding.RoleRef.Name)
	sa := m.agent.Spec.Template.Spec.ServiceAccountName
	require.NotNil(t, m.serviceAccts[sa])
	assert.Contains(t, binding.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: m.namespace.Name})
}

func TestGatewayRBACMatchesProfile(t *testing.T) {
	m := load(t)
	prof, err := profile.Effective("gateway", containerEnv(t, m.gateway.Spec.Template.Spec.Containers[0]))
	require.NoError(t, err)
	role := m.roles["tailgate-gateway"]
	require.NotNil(t, role)
	assert.Equal(t, requiredRules(t, prof), rulesOf(role.Rules), "Role rules vs what configs/gateway.yaml uses")
	binding := m.nsBindings["tailgate-gateway"]
	require.NotNil(t, binding)
	assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}, binding.RoleRef)
	sa := m.gateway.Spec.Template.Spec.ServiceAccountName
	require.NotNil(t, m.serviceAccts[sa])
	assert.Contains(t, binding.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: m.namespace.Name})
	// The guard and the agents resolve the same Service.
	env := containerEnv(t, m.gateway.Spec.Template.Spec.Containers[0])
	agentEnv := containerEnv(t, m.agent.Spec.Template.Spec.Containers[0])
	for _, k := range []string{"TAILGATE_GATEWAY_RESOLVER", "TAILGATE_GATEWAY_K8S_SERVICE"} {
		assert.Equal(t, agentEnv[k], env[k], k)
	}
}

// mountedConfigFiles lists the files a container finds in dir, each with
// the ConfigMap it comes from: a configMap volume, or a projection of
// ConfigMaps, mounted there.
func mountedConfigFiles(t *testing.T, m *manifests, spec corev1.PodSpec, c corev1.Container, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	add := func(cmName string) {
		cm := m.configMaps[cmName]
		require.NotNil(t, cm, "ConfigMap %s is mounted but not in the manifests", cmName)
		for key := range cm.Data {
			_, twice := files[key]
			require.False(t, twice, "%s/%s comes from two ConfigMaps", dir, key)
			files[key] = cmName
		}
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range spec.Volumes {
			switch {
			case v.Name != vm.Name:
			case v.ConfigMap != nil:
				add(v.ConfigMap.Name)
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					require.NotNil(t, src.ConfigMap, "volume %s projects something other than ConfigMaps", v.Name)
					add(src.ConfigMap.Name)
				}
			}
		}
	}
	require.NotEmpty(t, files, "no ConfigMap mounted at %s", dir)
	return files
}

func TestConfigMapsComeFromConfigs(t *testing.T) {
	m := load(t)
	profiles := 0
	for _, cm := range m.configMaps {
		if !strings.HasPrefix(cm.Name, "tailgate-agent-config") && !strings.HasPrefix(cm.Name, "tailgate-gateway-config") &&
			!strings.HasPrefix(cm.Name, "tailgate-agent-overlay") && !strings.HasPrefix(cm.Name, "tailgate-gateway-overlay") {
			continue
		}
		profiles++
		require.Len(t, cm.Data, 1)
		for key, data := range cm.Data {
			file, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "configs", key))
			require.NoError(t, err)
			assert.Equal(t, string(file), data, "ConfigMap %s key %s", cm.Name, key)
		}
	}
	assert.Equal(t, 4, profiles, "ConfigMaps of the profiles and their overlays")
}

// TestUsersPoliciesRollTheGateways: an overlay that replaces
// tailgate-gateway-overlay with the user's policies (README.md's way) mounts it into
// the gateways under a new name, so the Deployment rolls, and leaves the
// agents alone.
func TestUsersPoliciesRollTheGateways(t *testing.T) {
	templates := func(objs []*unstructured.Unstructured) (gateway, agent corev1.PodTemplateSpec, policies map[string]string) {
		policies = map[string]string{}
		for _, u := range objs {
			switch {
			case u.GetKind() == "Deployment" && u.GetName() == "tailgate-gateway":
				var d appsv1.Deployment
				require.NoError(t, render.Strict(u, &d))
				gateway = d.Spec.Template
			case u.GetKind() == "DaemonSet":
				var ds appsv1.DaemonSet
				require.NoError(t, render.Strict(u, &ds))
				agent = ds.Spec.Template
			case u.GetKind() == "ConfigMap" && strings.HasPrefix(u.GetName(), render.GatewayOverlayConfigMap):
				var cm corev1.ConfigMap
				require.NoError(t, render.Strict(u, &cm))
				policies[cm.Name] = cm.Data[render.GatewayOverlayKey]
			}
		}
		return gateway, agent, policies
	}
	base, err := render.Overlay(t.TempDir(), nil, "")
	require.NoError(t, err)
	dir := t.TempDir()
	mine := []byte("- {name: everything, type: always_sample}\n")
	extra, err := render.WithPolicies(dir, mine)
	require.NoError(t, err)
	overlay, err := render.Overlay(dir, nil, extra)
	require.NoError(t, err)

	baseGateway, baseAgent, _ := templates(base)
	gateway, agent, policies := templates(overlay)
	require.Len(t, policies, 1)
	for name, data := range policies {
		assert.Equal(t, "processors:\n  tail_sampling:\n    policies:\n      "+string(mine), data, "the overlay's policies")
		assert.Contains(t, fmt.Sprint(gateway.Spec.Volumes), name, "the gateways mount %s", name)
	}
	assert.NotEqual(t, baseGateway, gateway, "the gateway pod template changes: the Deployment rolls")
	assert.Equal(t, baseAgent, agent, "the agents do not roll")
}

// TestClusterNameFromOneConfigMap: both tiers read TAILGATE_CLUSTER_NAME
// from the one tailgate-cluster ConfigMap, empty in the base (adds
// nothing), and an overlay that replaces it reaches both.
func TestClusterNameFromOneConfigMap(t *testing.T) {
	for _, tc := range []struct{ name, extra, want string }{
		{"base", "", ""},
		{"overlay", "configMapGenerator:\n  - name: tailgate-cluster\n    namespace: observability\n    behavior: replace\n    literals: [name=prod-eu-1]\n", "prod-eu-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render.Overlay(t.TempDir(), nil, tc.extra)
			require.NoError(t, err)
			configMaps := map[string]corev1.ConfigMap{}
			var pods []corev1.PodTemplateSpec
			for _, u := range objs {
				switch u.GetKind() {
				case "ConfigMap":
					var cm corev1.ConfigMap
					require.NoError(t, render.Strict(u, &cm))
					configMaps[cm.Name] = cm
				case "DaemonSet":
					var ds appsv1.DaemonSet
					require.NoError(t, render.Strict(u, &ds))
					pods = append(pods, ds.Spec.Template)
				case "Deployment":
					var d appsv1.Deployment
					require.NoError(t, render.Strict(u, &d))
					pods = append(pods, d.Spec.Template)
				}
			}
			require.Len(t, pods, 2)
			for _, pod := range pods {
				var ref *corev1.ConfigMapKeySelector
				for _, e := range pod.Spec.Containers[0].Env {
					if e.Name == "TAILGATE_CLUSTER_NAME" && e.ValueFrom != nil {
						ref = e.ValueFrom.ConfigMapKeyRef
					}
				}
				require.NotNil(t, ref, "%s: TAILGATE_CLUSTER_NAME not from a ConfigMap", pod.Labels)
				cm, ok := configMaps[ref.Name]
				require.True(t, ok, "ConfigMap %s is not rendered", ref.Name)
				assert.True(t, strings.HasPrefix(ref.Name, "tailgate-cluster"), ref.Name)
				assert.Equal(t, tc.want, cm.Data[ref.Key], "%s: the cluster name %s reads", pod.Labels, ref.Name)
			}
		})
	}
}
