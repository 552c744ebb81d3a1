package manifests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// withAutoscaling renders the base with the autoscaling component: its HPA
// and the adapter rules' ConfigMap.
func withAutoscaling(t *testing.T) (*autoscalingv2.HorizontalPodAutoscaler, render.AdapterRules) {
	t.Helper()
	objs, err := render.Overlay(t.TempDir(), []string{"autoscaling"}, "")
	require.NoError(t, err)
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	var rules render.AdapterRules
	for _, u := range objs {
		switch {
		case u.GetKind() == "HorizontalPodAutoscaler":
			hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			require.NoError(t, render.Strict(u, hpa))
		case u.GetKind() == "ConfigMap" && u.GetName() == render.AdapterRulesConfigMap:
			var cm corev1.ConfigMap
			require.NoError(t, render.Strict(u, &cm))
			assert.Equal(t, "observability", cm.Namespace)
			rules, err = render.ParseAdapterRules([]byte(cm.Data[render.AdapterRulesKey]))
			require.NoError(t, err)
		}
	}
	require.NotNil(t, hpa)
	require.NotEmpty(t, rules.Rules, "adapter rules ConfigMap")
	return hpa, rules
}

// rateWindow finds each windowed read of a series in an adapter query.
var rateWindow = regexp.MustCompile(`(?:rate|avg_over_time)\([<>.a-zA-Z_]+\{[^}]*\}\[(\d+[smh])\]\)`)

// TestAutoscalingComponent: the HPA of the autoscaling component asks for
// exactly the metrics the adapter rules serve, per pod or as the maximum
// over the namespace's gateways, from series labelled as the
// ServiceMonitor labels them; its targets agree with the profile,
// docs/sizing.md and the ring's skew; the base's behavior is kept.
func TestAutoscalingComponent(t *testing.T) {
	hpa, rules := withAutoscaling(t)
	base := load(t)
	assert.Equal(t, base.hpa.Spec.Behavior, hpa.Spec.Behavior, "the component changes the metrics only")
	assert.Equal(t, base.hpa.Spec.MinReplicas, hpa.Spec.MinReplicas)

	served := map[string]string{} // custom metric -> its rule's metricsQuery
	sm, _, _ := withMonitoring(t)
	var telemetryInterval time.Duration
	for _, e := range sm.Spec.Endpoints {
		if e.Port == "telemetry" {
			var err error
			telemetryInterval, err = time.ParseDuration(string(e.Interval))
			require.NoError(t, err)
		}
	}
	require.NotZero(t, telemetryInterval, "the ServiceMonitor scrapes the telemetry port")
	windows := func(r render.AdapterRule) {
		ms := rateWindow.FindAllStringSubmatch(r.MetricsQuery, -1)
		require.NotEmpty(t, ms, "%s: a rate or average over a window of the series: %s", r.Name.As, r.MetricsQuery)
		for _, m := range ms {
			window, err := time.ParseDuration(m[1])
			require.NoError(t, err)
			assert.GreaterOrEqual(t, window, 4*telemetryInterval, "%s: the window holds four scrapes", r.Name.As)
		}
	}
	for _, r := range rules.Rules {
		// The pod and namespace labels become the pod resource, as the
		// Prometheus Operator names them on a ServiceMonitor's targets.
		assert.Equal(t, "pod", r.Resources.Overrides["pod"].Resource, r.Name.As)
		assert.Equal(t, "namespace", r.Resources.Overrides["namespace"].Resource, r.Name.As)
		windows(r)
		served[r.Name.As] = r.MetricsQuery
	}
	for _, r := range rules.ExternalRules {
		// Namespaced by the HPA's namespace (the gateways of one install),
		// one value: the maximum over the gateway pods.
		assert.Nil(t, r.Resources.Namespaced, "%s: the adapter adds the HPA's namespace", r.Name.As)
		assert.Equal(t, "namespace", r.Resources.Overrides["namespace"].Resource, r.Name.As)
		assert.Contains(t, r.SeriesQuery, `tailgate_tier="gateway"`, r.Name.As)
		assert.Regexp(t, `^max\(`, r.MetricsQuery, "%s: one value, the hottest gateway's", r.Name.As)
		windows(r)
		served[r.Name.As] = r.MetricsQuery
	}

	targets := map[string]float64{}
	for _, m := range hpa.Spec.Metrics {
		var name string
		switch m.Type {
		case autoscalingv2.PodsMetricSourceType:
			name = m.Pods.Metric.Name
			require.Equal(t, autoscalingv2.AverageValueMetricType, m.Pods.Target.Type)
			targets[name] = m.Pods.Target.AverageValue.AsApproximateFloat64()
		case autoscalingv2.ExternalMetricSourceType:
			// Value: the HPA asks for replicas x value / target, so the
			// hottest gateway is held at the target.
			name = m.External.Metric.Name
			require.Nil(t, m.External.Metric.Selector)
			require.Equal(t, autoscalingv2.ValueMetricType, m.External.Target.Type)
			targets[name] = m.External.Target.Value.AsApproximateFloat64()
		default:
			t.Fatalf("%s metric: the component reads the adapter only, it needs no metrics-server", m.Type)
		}
		require.Contains(t, served, name, "the HPA asks for a metric no adapter rule serves")
	}
	assert.ElementsMatch(t, slices.Collect(maps.Keys(served)), slices.Collect(maps.Keys(targets)), "every rule is used")

	// Targets: below what one pod takes at the CPU target, and half of the
	// trace buffer.
	consts, err := harness.SizingConstants()
	require.NoError(t, err)
	c := base.gateway.Spec.Template.Spec.Containers[0]
	prof, err := profile.Effective("gateway", containerEnv(t, c))
	require.NoError(t, err)
	numTraces, err := strconv.ParseFloat(fmt.Sprint(profile.Get(prof, "processors", "tail_sampling", "num_traces")), 64)
	require.NoError(t, err)
	cpuBound := c.Resources.Requests.Cpu().AsApproximateFloat64() * designCPUShare / (consts.CPUSecondsPer10kSpans / 10_000)
	worst, err := harness.RingSkewWorst()
	require.NoError(t, err)
	t.Logf("targets %v; one pod at %.0f%% CPU takes %.0f spans/s; num_traces %.0f; the ring's worst hottest/mean %.2f", targets, 100*designCPUShare, cpuBound, numTraces, worst)
	// The hottest gateway's spans, within the HPA's tolerance above the
	// target, stay below what it takes at the CPU share.
	assert.LessOrEqual(t, targets["tailgate_hottest_gateway_spans_per_second"]*(1+harness.HPATolerance), cpuBound)
	traces := targets["tailgate_traces_in_memory"]
	assert.LessOrEqual(t, traces, numTraces/2, "room for the traffic to double while gateways start")
	assert.LessOrEqual(t, traces*worst*(1+harness.HPATolerance), numTraces, "with the mean at its target, the hottest gateway's buffer would fill")
}

// TestHPABehaviorSuitsTailSampling: prompt out, slow in, one leaving
// gateway at a time.
func TestHPABehaviorSuitsTailSampling(t *testing.T) {
	m := load(t)
	b := m.hpa.Spec.Behavior
	require.NotNil(t, b)
	c := m.gateway.Spec.Template.Spec.Containers[0]
	prof, err := profile.Effective("gateway", containerEnv(t, c))
	require.NoError(t, err)
	decisionWait, err := time.ParseDuration(fmt.Sprint(profile.Get(prof, "processors", "tail_sampling", "decision_wait")))
	require.NoError(t, err)

	assert.Zero(t, *b.ScaleUp.StabilizationWindowSeconds, "scale out at once")
	seconds := func(s int32) time.Duration { return time.Duration(s) * time.Second }
	assert.GreaterOrEqual(t, seconds(*b.ScaleDown.StabilizationWindowSeconds), 30*decisionWait, "scale in only after a sustained drop")
	require.Len(t, b.ScaleDown.Policies, 1)
	p := b.ScaleDown.Policies[0]
	assert.Equal(t, autoscalingv2.PodsScalingPolicy, p.Type)
	assert.EqualValues(t, 1, p.Value, "one pod at a time")
	grace := seconds(int32(*m.gateway.Spec.Template.Spec.TerminationGracePeriodSeconds))
	assert.GreaterOrEqual(t, seconds(p.PeriodSeconds), grace, "a leaving gateway is gone before the next leaves")
}
