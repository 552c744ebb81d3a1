// Package render builds the kustomize base with the kustomize API (what
// `kubectl apply -k` runs) and decodes the objects strictly.
package render

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// BaseDir is the kustomize base users apply.
func BaseDir() string {
	return filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "base")
}

// BaseImage is the image reference the kustomize base's pods run: its
// kustomization's images: entry, the release's image.
func BaseImage() (string, error) {
	data, err := os.ReadFile(filepath.Join(BaseDir(), "kustomization.yaml"))
	if err != nil {
		return "", err
	}
	var k struct {
		Images []struct {
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return "", err
	}
	if len(k.Images) != 1 {
		return "", fmt.Errorf("the base's kustomization names %d images, not 1", len(k.Images))
	}
	return k.Images[0].NewName + ":" + k.Images[0].NewTag, nil
}

// Build renders a kustomization directory to multi-document YAML.
func Build(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return res.AsYaml()
}

// Objects splits rendered YAML into unstructured objects.
func Objects(rendered []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range bytes.Split(rendered, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, err
		}
		if len(u.Object) == 0 { // a document of comments only (helm template's empty templates)
			continue
		}
		out = append(out, u)
	}
	return out, nil
}

// Strict decodes an object into its typed form, failing on unknown or
// duplicate fields (a misspelled key in a manifest would otherwise be
// silently dropped by the API server).
func Strict(u *unstructured.Unstructured, into any) error {
	data, err := yaml.Marshal(u.Object)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// Overlay renders what a user's overlay of the base builds: the base, the
// named components of deploy/kubernetes ("monitoring", "autoscaling") and
// extra kustomization fields (patches, ...) as YAML. dir is an empty
// directory for the overlay's kustomization.yaml.
func Overlay(dir string, components []string, extra string) ([]*unstructured.Unstructured, error) {
	rel := func(p string) (string, error) {
		return filepath.Rel(dir, filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", p))
	}
	base, err := rel("base")
	if err != nil {
		return nil, err
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [" + base + "]\ncomponents:\n"
	for _, c := range components {
		r, err := rel(c)
		if err != nil {
			return nil, err
		}
		k += "  - " + r + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k+extra), 0o644); err != nil {
		return nil, err
	}
	out, err := Build(dir)
	if err != nil {
		return nil, err
	}
	return Objects(out)
}

// GatewayOverlayConfigMap is the ConfigMap of the gateways' overlay
// (configs/gateway-overlay.yaml, empty), which users replace with their
// own, and its key.
const (
	GatewayOverlayConfigMap = "tailgate-gateway-overlay"
	GatewayOverlayKey       = "gateway-overlay.yaml"
)

// WithPolicies writes a gateway overlay holding policies (a tail_sampling
// policies list) into an overlay's dir and returns the kustomization
// fields (for Overlay's extra) that replace the base's
// tailgate-gateway-overlay with it, as README.md tells users to.
func WithPolicies(dir string, policies []byte) (string, error) {
	overlay := "processors:\n  tail_sampling:\n    policies:\n"
	for _, line := range strings.Split(strings.TrimRight(string(policies), "\n"), "\n") {
		overlay += "      " + line + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, GatewayOverlayKey), []byte(overlay), 0o644); err != nil {
		return "", err
	}
	return "configMapGenerator:\n  - name: " + GatewayOverlayConfigMap + "\n    namespace: observability\n    behavior: replace\n    files: [" + GatewayOverlayKey + "]\n", nil
}

// The autoscaling component's ConfigMap of adapter rules, and its key.
const (
	AdapterRulesConfigMap = "tailgate-prometheus-adapter-rules"
	AdapterRulesKey       = "config.yaml"
)

// AdapterRules is prometheus-adapter's configuration, the part the
// autoscaling component's rules use: per-object custom metrics and
// external metrics.
type AdapterRules struct {
	Rules         []AdapterRule `json:"rules"`
	ExternalRules []AdapterRule `json:"externalRules"`
}

// AdapterRule turns one Prometheus series into one custom or external
// metric.
type AdapterRule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Resource string `json:"resource"`
		} `json:"overrides"`
		// Namespaced, for an external rule: whether the adapter adds the
		// HPA's namespace to the matchers (unset: it does).
		Namespaced *bool `json:"namespaced"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// ParseAdapterRules decodes adapter rules strictly: the adapter ignores a
// misspelled key.
func ParseAdapterRules(data []byte) (AdapterRules, error) {
	var r AdapterRules
	err := yaml.UnmarshalStrict(data, &r)
	return r, err
}

// Expand writes the rule's query as the adapter does for the given pods of
// a namespace: the series name of seriesQuery, label matchers selecting the
// pods, grouped by pod.
func (r AdapterRule) Expand(namespace string, pods []string) string {
	series, _, _ := strings.Cut(r.SeriesQuery, "{")
	q := strings.ReplaceAll(r.MetricsQuery, "<<.Series>>", series)
	q = strings.ReplaceAll(q, "<<.LabelMatchers>>", fmt.Sprintf(`namespace=%q,pod=~%q`, namespace, strings.Join(pods, "|")))
	return strings.ReplaceAll(q, "<<.GroupBy>>", "pod")
}

// ExpandExternal writes an external rule's query as the adapter does for
// an HPA in namespace whose metric has no selector: the series name of
// seriesQuery and the namespace as the only matcher.
func (r AdapterRule) ExpandExternal(namespace string) string {
	series, _, _ := strings.Cut(r.SeriesQuery, "{")
	q := strings.ReplaceAll(r.MetricsQuery, "<<.Series>>", series)
	return strings.ReplaceAll(q, "<<.LabelMatchers>>", fmt.Sprintf(`namespace=%q`, namespace))
}
