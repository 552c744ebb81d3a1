package live

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
)

// TestKubePrometheusStackSelectsTheChartsObjects: with
// prometheus-operator's own CRDs on the API server, the chart's
// ServiceMonitor, PodMonitor and PrometheusRule apply (the server checks
// them against the operator's schemas), and a Prometheus set up as
// kube-prometheus-stack sets up its own (serviceMonitorSelector,
// podMonitorSelector and ruleSelector matching its release label) finds a
// release's objects exactly when monitoring.*.extraLabels give them that
// label; the ServiceMonitor then selects the release's Services, which
// name the ports it scrapes. The operator itself does not run here: the
// selection is the API server's, by the same label selectors.
func TestKubePrometheusStackSelectsTheChartsObjects(t *testing.T) {
	crds, err := harness.PrometheusOperatorCRDs()
	require.NoError(t, err)
	kinds := []string{"servicemonitors", "podmonitors", "prometheusrules"}
	args := []string{"apply", "--server-side", "--field-manager=tailgate-test"}
	for _, k := range kinds {
		args = append(args, "-f", filepath.Join(crds, "monitoring.coreos.com_"+k+".yaml"))
	}
	_, err = env.cp.Kubectl(args...)
	require.NoError(t, err)
	_, err = env.cp.Kubectl("wait", "--for=condition=established", "--timeout=1m",
		"crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
	require.NoError(t, err)

	const ns, stack = "monitoring-selection", "kube-prometheus-stack"
	_, err = env.cp.Kubectl("create", "namespace", ns)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = env.cp.Kubectl("delete", "namespace", ns, "--wait=false") })

	// Two releases: "selected" labels its monitoring objects for the stack,
	// "unlabelled" leaves extraLabels empty, as the chart did before them.
	for release, labelled := range map[string]bool{"selected": true, "unlabelled": false} {
		values := []string{}
		for _, v := range []string{"serviceMonitor", "podMonitor", "prometheusRule"} {
			values = append(values, "--set", "monitoring."+v+".enabled=true")
			if labelled {
				values = append(values, "--set", "monitoring."+v+".extraLabels.release="+stack)
			}
		}
		objs, err := render.Chart(release, ns, values...)
		require.NoError(t, err)
		var docs []string
		for _, u := range objs {
			switch u.GetKind() {
			case "ServiceMonitor", "PodMonitor", "PrometheusRule", "Service":
				data, err := yaml.Marshal(u.Object)
				require.NoError(t, err)
				docs = append(docs, string(data))
			}
		}
		manifest := filepath.Join(t.TempDir(), release+".yaml")
		require.NoError(t, os.WriteFile(manifest, []byte(strings.Join(docs, "---\n")), 0o644))
		_, err = env.cp.Kubectl("apply", "--server-side", "--field-manager=tailgate-test", "--validate=strict", "-n", ns, "-f", manifest)
		require.NoError(t, err, "the API server refused the chart's %s monitoring objects", release)
	}

	// kube-prometheus-stack's Prometheus: each selector matches its release label.
	selected, err := env.cp.Kubectl("-n", ns, "get", strings.Join(kinds, ","), "-l", "release="+stack, "-o", "name")
	require.NoError(t, err)
	got := strings.Fields(selected)
	sort.Strings(got)
	assert.Equal(t, []string{
		"podmonitor.monitoring.coreos.com/selected-tailgate",
		"prometheusrule.monitoring.coreos.com/selected-tailgate",
		"servicemonitor.monitoring.coreos.com/selected-tailgate",
	}, got, "what the stack's selectors find")

	// The selected ServiceMonitor finds the release's Services, and each
	// port it scrapes is named on one of them.
	raw, err := env.cp.Kubectl("-n", ns, "get", "servicemonitor", "selected-tailgate", "-o", "json")
	require.NoError(t, err)
	var sm struct {
		Spec struct {
			Selector  metav1.LabelSelector
			Endpoints []struct{ Port string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &sm))
	selector, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	require.NoError(t, err)
	raw, err = env.cp.Kubectl("-n", ns, "get", "services", "-l", selector.String(), "-o", "json")
	require.NoError(t, err)
	var services struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ Ports []struct{ Name string } }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &services))
	ports := map[string]bool{}
	var names []string
	for _, s := range services.Items {
		names = append(names, s.Metadata.Name)
		for _, p := range s.Spec.Ports {
			ports[p.Name] = true
		}
	}
	require.NotEmpty(t, names, "the ServiceMonitor selects no Service")
	for _, n := range names {
		assert.True(t, strings.HasPrefix(n, "selected-"), "the ServiceMonitor selects %s, another release's Service", n)
	}
	for _, e := range sm.Spec.Endpoints {
		assert.True(t, ports[e.Port], "no selected Service names the port %q the ServiceMonitor scrapes (Services %v)", e.Port, names)
	}
}
