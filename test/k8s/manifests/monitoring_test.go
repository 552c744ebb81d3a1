package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
)

// withMonitoring renders the base plus the optional monitoring component,
// as a user's overlay would.
func withMonitoring(t *testing.T) (*monitoringv1.ServiceMonitor, *monitoringv1.PrometheusRule, []*corev1.Service) {
	t.Helper()
	objs, err := render.Overlay(t.TempDir(), []string{"monitoring"}, "")
	require.NoError(t, err)
	var sm *monitoringv1.ServiceMonitor
	var rule *monitoringv1.PrometheusRule
	var services []*corev1.Service
	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceMonitor":
			sm = &monitoringv1.ServiceMonitor{}
			require.NoError(t, render.Strict(u, sm))
		case "PrometheusRule":
			rule = &monitoringv1.PrometheusRule{}
			require.NoError(t, render.Strict(u, rule))
		case "Service":
			s := &corev1.Service{}
			require.NoError(t, render.Strict(u, s))
			services = append(services, s)
		}
	}
	require.NotNil(t, sm)
	require.NotNil(t, rule)
	assert.Equal(t, "observability", sm.Namespace)
	assert.Equal(t, "observability", rule.Namespace)
	return sm, rule, services
}

// TestServiceMonitorScrapesEveryPodOnce: the ServiceMonitor selects the
// agent and gateway Services (not the headless one, which would scrape each
// gateway twice), and every port it names exists on them.
func TestServiceMonitorScrapesEveryPodOnce(t *testing.T) {
	sm, _, services := withMonitoring(t)
	sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
	var selected []string
	ports := map[string]bool{}
	for _, s := range services {
		if sel.Matches(labels.Set(s.Labels)) {
			selected = append(selected, s.Name)
			assert.NotEqual(t, corev1.ClusterIPNone, s.Spec.ClusterIP, "%s is headless: its pods would be scraped twice", s.Name)
			for _, p := range s.Spec.Ports {
				ports[p.Name] = true
			}
		}
	}
	assert.ElementsMatch(t, []string{"tailgate-agent", "tailgate-gateway"}, selected)
	for _, ep := range sm.Spec.Endpoints {
		assert.True(t, ports[ep.Port], "endpoint port %s on no selected Service", ep.Port)
	}
}

// TestPrometheusRules runs promtool's unit tests (monitoring/rules-test.yaml)
// against the rule groups of the PrometheusRule.
func TestPrometheusRules(t *testing.T) {
	promtool, err := harness.ToolBinary("prometheus", "promtool")
	require.NoError(t, err)
	_, rule, _ := withMonitoring(t)
	dir := t.TempDir()
	groups, err := yaml.Marshal(rule.Spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), groups, 0o644))
	tests, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "rules-test.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules-test.yaml"), tests, 0o644))

	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(promtool, "test", "rules", filepath.Join(dir, "rules-test.yaml")).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// The same series from a plain collector (the same metric names, no
	// tailgate_tier label) fire nothing.
	plain := plainCollectorReplay(t, tests)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain-collector-test.yaml"), plain, 0o644))
	out, err = exec.Command(promtool, "test", "rules", filepath.Join(dir, "plain-collector-test.yaml")).CombinedOutput()
	require.NoError(t, err, "an alert fires on a plain collector's series:\n%s", out)

	// Every alert has at least one unit test.
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			assert.True(t, strings.Contains(string(tests), "alertname: "+r.Alert), "alert %s has no promtool test", r.Alert)
		}
	}
}

// tierLabel is the label the profiles put on every internal metric
// (service::telemetry::resource tailgate_tier).
var tierLabel = regexp.MustCompile(`tailgate_tier="[a-z]+",?`)

// plainCollectorReplay turns promtool's unit tests of the alerts into their
// over-match test: every input series without the tailgate_tier label, as
// a collector that is not tailgate exposes the same metrics, and every
// alert expected to stay silent at every evaluation.
func plainCollectorReplay(t *testing.T, tests []byte) []byte {
	t.Helper()
	var file map[string]any
	require.NoError(t, yaml.Unmarshal(tests, &file))
	labelled := 0
	for _, tc := range file["tests"].([]any) {
		tc := tc.(map[string]any)
		for _, in := range tc["input_series"].([]any) {
			in := in.(map[string]any)
			series := in["series"].(string)
			if tierLabel.MatchString(series) {
				labelled++
			}
			in["series"] = tierLabel.ReplaceAllString(series, "")
		}
		for _, at := range tc["alert_rule_test"].([]any) {
			at.(map[string]any)["exp_alerts"] = []any{}
		}
	}
	require.NotZero(t, labelled, "no test series carries tailgate_tier")
	out, err := yaml.Marshal(file)
	require.NoError(t, err)
	return out
}

// TestLoadAlertAboveTheRingsSkew: the alert on one gateway's load against
// the mean fires above what the ring alone ever gives one gateway (the
// worst of docs/sizing.md's ring skew table, plus 5% for the noise of a
// rate), or it would page on a healthy tier.
func TestLoadAlertAboveTheRingsSkew(t *testing.T) {
	_, rule, _ := withMonitoring(t)
	var expr string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "TailgateGatewayLoadBeyondRingSkew" {
				expr = r.Expr.String()
			}
		}
	}
	m := regexp.MustCompile(`([0-9.]+) \* avg by \(namespace\)`).FindStringSubmatch(expr)
	require.NotNil(t, m, "the alert compares a gateway with a multiple of the mean: %s", expr)
	threshold, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	worst, err := harness.RingSkewWorst()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, threshold, worst*1.05, "the ring's worst hottest/mean is %.2f", worst)
}

// TestGrafanaDashboardConfigMap: the monitoring component ships
// dashboard.json as a ConfigMap Grafana's dashboard sidecar picks up (its
// default label), unchanged. test/e2e runs every panel's queries against a
// real Prometheus scraping a live topology.
func TestGrafanaDashboardConfigMap(t *testing.T) {
	objs, err := render.Overlay(t.TempDir(), []string{"monitoring"}, "")
	require.NoError(t, err)
	shipped, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "dashboard.json"))
	require.NoError(t, err)
	found := false
	for _, u := range objs {
		if u.GetKind() != "ConfigMap" || u.GetName() != "tailgate-grafana-dashboard" {
			continue
		}
		found = true
		var cm corev1.ConfigMap
		require.NoError(t, render.Strict(u, &cm))
		assert.Equal(t, "1", cm.Labels["grafana_dashboard"], "the Grafana sidecar's default label")
		assert.Equal(t, "observability", cm.Namespace)
		assert.JSONEq(t, string(shipped), cm.Data["tailgate.json"])
	}
	require.True(t, found, "no dashboard ConfigMap in the monitoring component")
}
