// Package chart checks the Helm chart (deploy/helm/tailgate) without a
// cluster, with the pinned Helm CLI: its renders equal the kustomize base
// and components object by object, its values schema refuses what it
// must, and it lints. test/k8s/live installs it on a real control plane.
package chart

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// The release the equivalence renders: a release called "tailgate" in
// "observability" names its objects as the base does.
const (
	release   = "tailgate"
	namespace = "observability"
)

// variants pairs chart values with the kustomize components that build the
// same thing from the base.
var variants = []struct {
	name       string
	set        []string
	components []string
}{
	{name: "defaults"},
	{name: "autoscaling on custom metrics", set: []string{"autoscaling.mode=custom-metrics"}, components: []string{"autoscaling"}},
	{name: "monitoring", set: []string{"monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true"}, components: []string{"monitoring"}},
	{name: "mtls", set: []string{"mtls.enabled=true"}, components: []string{"mtls"}},
	{name: "network policies", set: []string{"networkPolicy.enabled=true"}, components: []string{"network-policies"}},
	{
		name:       "everything",
		set:        []string{"autoscaling.mode=custom-metrics", "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true", "mtls.enabled=true", "networkPolicy.enabled=true"},
		components: []string{"autoscaling", "monitoring", "mtls", "network-policies"},
	},
}

// TestChartRendersTheBase: for each variant, the chart's render and the
// kustomize build of the base with the matching components hold the same
// objects, field for field, once what legitimately differs is normalised
// (see normaliseChart and normaliseBase). A drift of either side fails.
func TestChartRendersTheBase(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			base, err := render.Overlay(t.TempDir(), v.components, "")
			require.NoError(t, err)
			chart, err := render.Chart(release, namespace, setArgs(v.set)...)
			require.NoError(t, err)

			want := byKey(t, normaliseBase(t, base))
			got := byKey(t, normaliseChart(t, chart))
			assert.Equal(t, sortedKeys(want), sortedKeys(got), "objects of the base (with %v) and of the chart (with %v)", v.components, v.set)
			for k, w := range want {
				if g, ok := got[k]; ok {
					assert.Equal(t, w.Object, g.Object, "%s differs between the base and the chart", k)
				}
			}
		})
	}
}

// TestReleaseNamesPrefixEveryObject: a release of another name makes the
// same objects with every name prefixed (<release>-tailgate-...), and
// every reference follows: nothing is named for the base's release alone,
// so two releases, even in one namespace, never share an object (the
// agents' ClusterRole included) nor select each other's pods.
func TestReleaseNamesPrefixEveryObject(t *testing.T) {
	set := setArgs(variants[len(variants)-1].set)
	ours, err := render.Chart(release, namespace, set...)
	require.NoError(t, err)
	edge, err := render.Chart("edge", namespace, set...)
	require.NoError(t, err)

	for _, u := range edge {
		assert.True(t, strings.HasPrefix(u.GetName(), "edge-tailgate"), "%s %s is not named for its release", u.GetKind(), u.GetName())
		assert.Equal(t, "edge", u.GetLabels()["app.kubernetes.io/instance"], "%s %s: instance label", u.GetKind(), u.GetName())
	}
	// And the selectors differ by the release: edge's never match ours.
	for _, u := range edge {
		if sel, ok, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels"); ok {
			assert.Equal(t, "edge", sel["app.kubernetes.io/instance"], "%s %s selects other releases' pods", u.GetKind(), u.GetName())
		}
	}
	// Renamed back, the edge release is ours, reference for reference.
	renamed := byKey(t, normaliseChart(t, renameRelease(t, edge, "edge-tailgate", release)))
	want := byKey(t, normaliseChart(t, ours))
	assert.Equal(t, sortedKeys(want), sortedKeys(renamed))
	for k, w := range want {
		assert.Equal(t, w.Object, renamed[k].Object, "%s", k)
	}
}

func setArgs(set []string) []string {
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		k := fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		require.NotContains(t, out, k, "two objects %s", k)
		out[k] = u
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// helmLabels are the labels Helm's conventions add to every object and
// selector: the chart, the manager, the release and its version.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

// normaliseChart removes from the chart's render what is Helm's and not
// tailgate's:
//   - Helm's labels, wherever they appear (metadata, pod templates,
//     selectors): the base has no release;
//   - the checksum/config pod annotations: the base's generated ConfigMap
//     names roll the pods instead (TestConfigChangesRollThePods);
//   - imagePullPolicy IfNotPresent, the API's default for a tagged image,
//     and the image's tag: the chart runs its release
//     (appVersion), the base the local build (:dev);
//   - the order of env, volumes and volumeMounts (sortByName);
//   - environment variables the chart sets to exactly the profile's own
//     default (the values.yaml defaults shown to users): a value equal to
//     the default is no setting. Only where the base does not set the
//     variable itself.
func normaliseChart(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	defaults := profileDefaults(t)
	for _, u := range objs {
		dropKeys(u.Object, helmLabels)
		forEachPodSpec(u, func(tmpl map[string]any) {
			ann, _, _ := unstructured.NestedFieldNoCopy(tmpl, "metadata", "annotations")
			if ann, ok := ann.(map[string]any); ok {
				for k := range ann {
					if strings.HasPrefix(k, "checksum/") {
						delete(ann, k)
					}
				}
				if len(ann) == 0 {
					unstructured.RemoveNestedField(tmpl, "metadata", "annotations")
				}
			}
			sortByName(t, tmpl)
			forEachContainer(t, tmpl, func(c map[string]any) {
				if c["imagePullPolicy"] == "IfNotPresent" {
					delete(c, "imagePullPolicy")
				}
				c["image"] = untagged(c["image"].(string))
				env, _ := c["env"].([]any)
				var kept []any
				for _, e := range env {
					e := e.(map[string]any)
					name, value, literal := e["name"].(string), e["value"], e["valueFrom"] == nil
					if def, known := defaults[name]; known && literal && value == def && !baseSets[name] {
						continue
					}
					kept = append(kept, e)
				}
				c["env"] = kept
			})
		})
	}
	return objs
}

// baseSets are the variables the base sets itself (to a value of its own):
// those the chart must set to the same value, not drop.
var baseSets = map[string]bool{"TAILGATE_GATEWAY_RESOLVER": true, "TAILGATE_GATEWAY_K8S_SERVICE": true, "GOGC": true}

// kustomizeHash is the suffix kustomize's generators append to a
// ConfigMap's name.
var kustomizeHash = regexp.MustCompile(`^(.+)-[a-z0-9]{10}$`)

// normaliseBase removes from the kustomize build what is kustomize's and
// not tailgate's, or what Helm does otherwise:
//   - the generated ConfigMaps' hash suffixes, in their names and every
//     reference (the chart's checksum annotations roll the pods instead);
//   - the Namespace: a Helm release installs into a namespace it does not
//     own (`--create-namespace`, README.md says how to label it);
//   - the Deployment's replicas when an HPA scales it: the chart leaves the
//     count to the HPA (a replicas field would reset it at every upgrade);
//     the base's count must equal the HPA's minimum;
//   - the image's tag and the order of env, volumes and volumeMounts (see
//     normaliseChart);
//   - GOMEMLIMIT: the base reads the container's memory request (half its
//     limit), the chart computes half of limits.memory at render, for any
//     request; both as the bytes the kubelet would give.
func normaliseBase(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	renames := map[string]string{}
	minReplicas := int64(-1)
	for _, u := range objs {
		if u.GetKind() == "ConfigMap" {
			if m := kustomizeHash.FindStringSubmatch(u.GetName()); m != nil && strings.HasPrefix(m[1], "tailgate-") {
				renames[u.GetName()] = m[1]
			}
		}
		if u.GetKind() == "HorizontalPodAutoscaler" {
			minReplicas = number(u.Object, "spec", "minReplicas")
		}
	}
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			continue
		}
		u.Object = replaceStrings(u.Object, func(s string) string {
			if r, ok := renames[s]; ok {
				return r
			}
			return s
		}).(map[string]any)
		if u.GetKind() == "Deployment" && minReplicas >= 0 {
			assert.Equal(t, minReplicas, number(u.Object, "spec", "replicas"), "the base's gateway count is the HPA's minimum")
			unstructured.RemoveNestedField(u.Object, "spec", "replicas")
		}
		forEachPodSpec(u, func(tmpl map[string]any) {
			sortByName(t, tmpl)
			forEachContainer(t, tmpl, func(c map[string]any) {
				c["image"] = untagged(c["image"].(string))
				resolveGOMEMLIMIT(t, c)
			})
		})
		out = append(out, u)
	}
	require.NotEmpty(t, renames, "the base generates its ConfigMaps")
	return out
}

// profileDefaults are the defaults of every variable the profiles read.
func profileDefaults(t *testing.T) map[string]string {
	t.Helper()
	out, err := profile.AllVariables()
	require.NoError(t, err)
	return out
}

func untagged(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}

// renameRelease replaces from by to in every string of the objects (names
// and references) and the release's name in its instance labels.
func renameRelease(t *testing.T, objs []*unstructured.Unstructured, from, to string) []*unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		u.Object = replaceStrings(u.Object, func(s string) string { return strings.ReplaceAll(s, from, to) }).(map[string]any)
	}
	return objs
}

func replaceStrings(v any, f func(string) string) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case map[string]any:
		for k, e := range v {
			v[k] = replaceStrings(e, f)
		}
	case []any:
		for i, e := range v {
			v[i] = replaceStrings(e, f)
		}
	}
	return v
}

// dropKeys removes the keys from every map in v.
func dropKeys(v any, keys []string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(v, k)
		}
		for _, e := range v {
			dropKeys(e, keys)
		}
	case []any:
		for _, e := range v {
			dropKeys(e, keys)
		}
	}
}

// forEachPodSpec calls f with the object's pod template, if it has one,
// to change in place.
func forEachPodSpec(u *unstructured.Unstructured, f func(template map[string]any)) {
	if tmpl, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "template"); ok {
		f(tmpl.(map[string]any))
	}
}

// forEachContainer calls f with each container of a pod template, to
// change in place.
func forEachContainer(t *testing.T, template map[string]any, f func(c map[string]any)) {
	t.Helper()
	cs, ok, _ := unstructured.NestedFieldNoCopy(template, "spec", "containers")
	require.True(t, ok, "a pod template without containers")
	for _, c := range cs.([]any) {
		f(c.(map[string]any))
	}
}

// sortByName orders a pod template's volumes and its containers' env and
// volumeMounts by name: kustomize's patches put what they add in an order
// of their own, and none of these lists means anything by its order (the
// kubelet mounts by name; an env value could refer to an earlier one with
// $(NAME), which none of tailgate's do, checked here).
func sortByName(t *testing.T, template map[string]any) {
	t.Helper()
	byName := func(list any) {
		items, _ := list.([]any)
		slices.SortStableFunc(items, func(a, b any) int {
			return strings.Compare(a.(map[string]any)["name"].(string), b.(map[string]any)["name"].(string))
		})
	}
	volumes, _, _ := unstructured.NestedFieldNoCopy(template, "spec", "volumes")
	byName(volumes)
	forEachContainer(t, template, func(c map[string]any) {
		for _, e := range asSlice(c["env"]) {
			v, _ := e.(map[string]any)["value"].(string)
			require.NotContains(t, v, "$(", "an env value refers to another variable: its order matters")
		}
		byName(c["env"])
		byName(c["volumeMounts"])
	})
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// number reads a numeric field (JSON-decoded: float64); -1 where absent.
func number(obj map[string]any, path ...string) int64 {
	v, ok, _ := unstructured.NestedFieldNoCopy(obj, path...)
	if f, isFloat := v.(float64); ok && isFloat {
		return int64(f)
	}
	return -1
}

// TestPackagedChartIsTheChart: the chart as `helm package` ships it (its
// files/ links to configs/ and deploy/kubernetes resolved into the archive)
// renders exactly what the chart directory renders.
func TestPackagedChartIsTheChart(t *testing.T) {
	dir := t.TempDir()
	_, err := render.Helm("package", render.ChartDir(), "-d", dir)
	require.NoError(t, err)
	archives, err := filepath.Glob(filepath.Join(dir, "tailgate-*.tgz"))
	require.NoError(t, err)
	require.Len(t, archives, 1)
	set := setArgs(variants[len(variants)-1].set)
	fromDir, err := render.Helm(append([]string{"template", release, render.ChartDir(), "--namespace", namespace}, set...)...)
	require.NoError(t, err)
	fromArchive, err := render.Helm(append([]string{"template", release, archives[0], "--namespace", namespace}, set...)...)
	require.NoError(t, err)
	assert.Equal(t, fromDir, fromArchive)
	assert.Contains(t, fromArchive, "tail_sampling:", "the packaged chart carries the gateway profile")
}

// resolveGOMEMLIMIT replaces a container's GOMEMLIMIT read from its
// resources by the value the kubelet gives it.
func resolveGOMEMLIMIT(t *testing.T, c map[string]any) {
	t.Helper()
	env, _ := c["env"].([]any)
	for _, e := range env {
		e := e.(map[string]any)
		if e["name"] != "GOMEMLIMIT" || e["valueFrom"] == nil {
			continue
		}
		var container corev1.Container
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(c, &container))
		var ref corev1.ResourceFieldSelector
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(e["valueFrom"].(map[string]any)["resourceFieldRef"].(map[string]any), &ref))
		v, err := render.ResourceFieldValue(container, &ref)
		require.NoError(t, err)
		delete(e, "valueFrom")
		e["value"] = v
	}
}
