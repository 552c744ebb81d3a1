package live

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
)

// The test's HPA: the autoscaling component as shipped, with its windows
// shortened and its targets scaled to a load this machine carries beside
// the cluster (a test overlay; the shipped numbers stay as they are).
const (
	testSpansTarget = 300 // spans/s of the hottest gateway (shipped: 22000)
	// Traces in memory per gateway (shipped: 14000): above what the test's
	// load holds, so the spans metric is the one that scales here; this one
	// is still read, and must be, or the HPA would not scale in.
	testTracesTarget = 2000
	minGateways      = 3 // the base's minReplicas

	// The load, in new traces per second (21.5 spans each on average).
	// Low: ~540 spans/s, a mean of 180 per gateway; the ring's worst
	// hottest/mean (1.77) takes one to 320, inside the HPA's 10%
	// tolerance of the target: three gateways hold it.
	lowRate = 25
	// Hot: ~720 spans/s, a mean of 240 per gateway, below the target; but
	// half of the traces have IDs the ring gives to one gateway, which
	// takes 360 + a third of 360 or so, 1.5-1.7x the target. An HPA on the
	// mean would not move; this one must.
	hotRate  = 33.5
	hotShare = 0.5
)

const testHPAPatch = `patches:
  - target: {kind: HorizontalPodAutoscaler, name: tailgate-gateway}
    patch: |
      - {op: replace, path: /spec/metrics/0/external/target/value, value: "300"}
      - {op: replace, path: /spec/metrics/1/pods/target/averageValue, value: "2000"}
      - {op: replace, path: /spec/behavior/scaleDown/stabilizationWindowSeconds, value: 20}
      - {op: replace, path: /spec/behavior/scaleDown/policies/0/periodSeconds, value: 10}
`

// TestHPAScalesOnTheHottestGateway: the gateway tier autoscales for real,
// on its hottest gateway. Prometheus discovers the gateways through the API
// server (the shipped scrape config), prometheus-adapter serves the shipped
// rules through the aggregation layer, and the controller-manager's HPA
// controller scales the Deployment on them while the load runs through the
// agents: low, then hot on one gateway with the mean below the target,
// then low. The test never scales anything itself. Asserted: the HPA is
// ScalingActive and reads what Prometheus computes; uniform load loads the
// hottest gateway within the ring's skew; the hot gateway crosses the
// target while the mean stays below it, and the HPA scales out by at least
// two, then back to the minimum; the agents follow; every error and slow
// trace reaches the backend complete through every change.
func TestHPAScalesOnTheHottestGateway(t *testing.T) {
	settleGateways(t, minGateways, "k8s")
	rules := applyTestAutoscaling(t)
	dir := t.TempDir()
	prom := startClusterPrometheus(t, dir)
	rulesFile, err := cluster.RulesFile(dir, rules)
	require.NoError(t, err)
	parsedRules, err := render.ParseAdapterRules(rules)
	require.NoError(t, err)
	metricsAPI, err := cluster.StartCustomMetricsAPI(env.cp, dir, prom.URL(), rulesFile)
	require.NoError(t, err)
	t.Cleanup(metricsAPI.Stop)
	failed := true
	t.Cleanup(func() {
		if failed {
			t.Logf("prometheus-adapter:\n%s\nprometheus:\n%s\ncontroller-manager:\n%s", metricsAPI.LogTail(20), prom.LogTail(20), env.cp.Logs(20))
		}
	})
	spansRule := spansRule(t, parsedRules)

	timeline := recordReplicas(t)
	load := newRamp(t)
	defer load.stop()

	// Until the adapter's one-minute rates hold nothing but this load.
	lowStart := time.Now()
	load.hold(lowRate, 3*time.Minute, "a minute and more of low load: the HPA reads both metrics and holds the minimum", func() (bool, string) {
		h := hpa(t)
		return time.Since(lowStart) > 80*time.Second && scalingActive(h) && len(h.Status.CurrentMetrics) == 2 && h.Status.DesiredReplicas == minGateways, hpaState(h)
	})
	var agreement string
	load.hold(lowRate, 2*time.Minute, "the HPA's and the adapter's values agree with Prometheus", func() (bool, string) {
		ok, state := metricsAgreeWithPrometheus(t, prom, parsedRules)
		agreement = state
		return ok, state
	})
	// Uniform load: the ring gives the hottest gateway more than the mean,
	// at most the worst hottest/mean ratio docs/sizing.md computes for the
	// ring, give or take the noise of a one-minute rate at this load (10%).
	// Here, live, as the adapter's rule computes it per pod; a gateway
	// hotter than that is not loaded by the ring.
	worst, err := harness.RingSkewWorst()
	require.NoError(t, err)
	uniform := perGatewaySpans(t, prom, spansRule)
	t.Logf("REPORT autoscaling: uniform load at %d gateways: the hottest takes %.0f spans/s, %.2fx the mean %.0f; the ring's worst measured ratio %.2fx",
		len(uniform.perPod), uniform.hottest, uniform.hottest/uniform.mean, uniform.mean, worst)
	const rateNoise = 1.1
	assert.LessOrEqual(t, uniform.hottest/uniform.mean, worst*rateNoise, "the hottest gateway takes more than the ring's worst skew explains")

	// Hot: half of the new traces go to one gateway, by the agents' own
	// ring (rebalance_guard's, which the ring conformance test holds to
	// the load balancing exporter's).
	endpoints := readyEndpoints(t)
	for i, e := range endpoints {
		endpoints[i] = net.JoinHostPort(e, "4317")
	}
	slices.Sort(endpoints)
	hotGateway := endpoints[0]
	load.bias(rebalanceguardprocessor.RingOwner(endpoints), hotGateway, hotShare)
	step := time.Now()
	var beforeScaleOut gatewaySpans
	var hpaAtScaleOut float64
	load.hold(hotRate, 5*time.Minute, fmt.Sprintf("at least %d ready gateways", minGateways+2), func() (bool, string) {
		h := hpa(t)
		if h.Status.DesiredReplicas == minGateways {
			beforeScaleOut = perGatewaySpans(t, prom, spansRule)
		} else if hpaAtScaleOut == 0 {
			hpaAtScaleOut = externalCurrent(h, spansRule.Name.As)
		}
		ready := len(readyPods(t, "tailgate-gateway"))
		return ready >= minGateways+2 && ready == int(h.Status.DesiredReplicas), fmt.Sprintf("%d ready; %s", ready, hpaState(h))
	})
	hotPod := podWithIP(t, strings.TrimSuffix(hotGateway, ":4317"))
	t.Logf("REPORT autoscaling: hot load, last reading before the HPA scaled out: %s takes %.0f spans/s (the hottest: %s), the mean %.0f, target %d; the HPA read %.0f for the hottest when it scaled out",
		hotPod, beforeScaleOut.perPod[hotPod], beforeScaleOut.hottestPod, beforeScaleOut.mean, testSpansTarget, hpaAtScaleOut)
	assert.Less(t, beforeScaleOut.mean, float64(testSpansTarget), "the mean stays below the target: an HPA on the mean would not scale")
	assert.Equal(t, hotPod, beforeScaleOut.hottestPod, "the gateway the ring gives the hot traces is the hottest")
	assert.Greater(t, beforeScaleOut.hottest, float64(testSpansTarget), "the hottest gateway crosses the target")
	assert.Greater(t, hpaAtScaleOut, testSpansTarget*(1+harness.HPATolerance), "the HPA scaled out on the hottest gateway, beyond its tolerance")
	scaledOut := len(readyPods(t, "tailgate-gateway"))
	agentsSeeGateways(t, scaledOut, "k8s")

	load.bias(nil, "", 0)
	load.hold(lowRate, 6*time.Minute, "back to the minimum", func() (bool, string) {
		h := hpa(t)
		return h.Status.DesiredReplicas == minGateways && len(pods(t, "app.kubernetes.io/name=tailgate-gateway")) == minGateways, hpaState(h)
	})
	plans, sent := load.stop()
	settleGateways(t, minGateways, "k8s")
	h := hpa(t)
	require.True(t, scalingActive(h), hpaState(h))

	// The replica count rose and fell with the load: up to the peak, then
	// down, never below the minimum, no flapping in between.
	changes := timeline.stop()
	desired := make([]int32, 0, len(changes))
	for _, c := range changes {
		desired = append(desired, c.desired)
	}
	peak := slices.Index(desired, slices.Max(desired))
	assert.True(t, slices.IsSorted(desired[:peak+1]), "the HPA's desired replicas rose monotonically to the peak: %v", desired)
	assert.True(t, slices.IsSortedFunc(desired[peak:], func(a, b int32) int { return int(b - a) }), "then fell monotonically: %v", desired)
	assert.GreaterOrEqual(t, int(desired[peak]), minGateways+2)
	assert.EqualValues(t, minGateways, desired[len(desired)-1])
	// The agents followed: every gateway count of the way up and down was
	// the ring of both agents at some point.
	for _, c := range changes {
		followed := slices.ContainsFunc(changes, func(o replicaChange) bool {
			return len(o.agents) == 2 && o.agents[0] == c.ready && o.agents[1] == c.ready
		})
		assert.True(t, followed, "no moment when both agents' rings held the %d ready gateways", c.ready)
	}

	var ev harness.Evaluation
	eventually(t, 2*time.Minute, "every error and slow trace at the backend, complete", func() (bool, string) {
		ev = harness.Evaluate(plans, sent, env.sink)
		b := ev.Breaches()
		return len(b) == 0, strings.Join(b, "; ")
	})

	// Report: the replica timeline, the time from the load step to the
	// first new ready gateway, and the guard's cost.
	var tl []string
	firstNewReady := time.Duration(-1)
	for _, c := range changes {
		tl = append(tl, fmt.Sprintf("%+.0fs desired %d ready %d agents %v", c.at.Sub(step).Seconds(), c.desired, c.ready, c.agents))
		if firstNewReady < 0 && c.at.After(step) && c.ready > minGateways {
			firstNewReady = c.at.Sub(step)
		}
	}
	t.Logf("REPORT autoscaling: replica timeline (seconds from the hot load's start):\n  %s", strings.Join(tl, "\n  "))
	t.Logf("REPORT autoscaling: load %d -> %.1f traces/s (%.0f%% to one gateway) -> %d; first new gateway ready %.0f s after the step; peak %d gateways; %s",
		lowRate, hotRate, 100*hotShare, lowRate, firstNewReady.Seconds(), desired[peak], agreement)
	var keptSpans, interestingKept int
	for _, p := range plans {
		kept := false
		for _, s := range p.Spans {
			if keptByGuard(s.SpanID) {
				keptSpans++
				kept = true
			}
		}
		if kept && p.Kind != harness.Normal {
			interestingKept++
		}
	}
	rate := float64(sent.SpansSent) / sent.Elapsed.Seconds()
	for _, k := range harness.Interesting {
		t.Logf("REPORT autoscaling: %s traces sent %d, complete %d", k, ev.ByKind[k].Sent, ev.ByKind[k].Complete)
	}
	t.Logf("REPORT autoscaling: guard cost: %d of %d spans sent carried the keep attribute (%.1f s of the mean %.0f spans/s); %d error and slow traces kept whole by it",
		keptSpans, sent.SpansSent, float64(keptSpans)/rate, rate, interestingKept)
	failed = t.Failed()
}

// spansRule is the adapter's external rule for the hottest gateway's spans.
func spansRule(t *testing.T, rules render.AdapterRules) render.AdapterRule {
	t.Helper()
	require.Len(t, rules.ExternalRules, 1)
	return rules.ExternalRules[0]
}

// gatewaySpans is the spans per second the ring routes to each gateway, as
// the adapter's rule computes them before it takes the maximum.
type gatewaySpans struct {
	perPod        map[string]float64
	hottest, mean float64
	hottestPod    string
}

func perGatewaySpans(t *testing.T, prom *harness.Prometheus, rule render.AdapterRule) gatewaySpans {
	t.Helper()
	q := rule.ExpandExternal(namespace)
	inner, ok := strings.CutPrefix(q, "max(")
	require.True(t, ok, "the rule takes the maximum: %s", q)
	samples, err := prom.Query(strings.TrimSuffix(inner, ")"))
	require.NoError(t, err)
	out := gatewaySpans{perPod: map[string]float64{}}
	for _, s := range samples {
		out.perPod[s.Labels["pod"]] = s.Value
		out.mean += s.Value / float64(len(samples))
		if s.Value > out.hottest {
			out.hottest, out.hottestPod = s.Value, s.Labels["pod"]
		}
	}
	require.NotEmpty(t, out.perPod, "no gateway's spans in Prometheus")
	return out
}

func podWithIP(t *testing.T, ip string) string {
	t.Helper()
	for _, p := range pods(t, "app.kubernetes.io/name=tailgate-gateway") {
		if p.Status.PodIP == ip {
			return p.Name
		}
	}
	t.Fatalf("no gateway pod has IP %s", ip)
	return ""
}

// externalCurrent is the value the HPA last read for an external metric.
func externalCurrent(h *autoscalingv2.HorizontalPodAutoscaler, metric string) float64 {
	for _, m := range h.Status.CurrentMetrics {
		if m.External != nil && m.External.Metric.Name == metric && m.External.Current.Value != nil {
			return m.External.Current.Value.AsApproximateFloat64()
		}
	}
	return 0
}

// applyTestAutoscaling applies the HPA of the autoscaling component, with
// the test's windows and targets, and returns the adapter rules it ships.
// The base's HPA comes back when the test ends.
func applyTestAutoscaling(t *testing.T) []byte {
	t.Helper()
	objs, err := render.Overlay(t.TempDir(), []string{"autoscaling"}, testHPAPatch)
	require.NoError(t, err)
	var rules []byte
	for _, u := range objs {
		switch {
		case u.GetKind() == "HorizontalPodAutoscaler":
			applyObject(t, u)
		case u.GetKind() == "ConfigMap" && u.GetName() == render.AdapterRulesConfigMap:
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			rules = []byte(data[render.AdapterRulesKey])
		}
	}
	require.NotEmpty(t, rules)
	t.Cleanup(func() {
		out, err := render.Build(render.BaseDir())
		require.NoError(t, err)
		objs, err := render.Objects(out)
		require.NoError(t, err)
		for _, u := range objs {
			if u.GetKind() == "HorizontalPodAutoscaler" {
				applyObject(t, u)
			}
		}
	})
	return rules
}

func applyObject(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	data, err := yaml.Marshal(u.Object)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "object.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err = env.cp.Kubectl("apply", "--server-side", "--field-manager=tailgate-test", "--force-conflicts", "-f", path)
	require.NoError(t, err)
}

// startClusterPrometheus runs Prometheus with the shipped scrape config
// (deploy/kubernetes/monitoring/prometheus-scrape-config.yaml): it
// discovers the pods from the test API server's EndpointSlices, as it
// would in the cluster. Scrapes every 5 s (a test copy of the interval).
func startClusterPrometheus(t *testing.T, dir string) *harness.Prometheus {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "prometheus-scrape-config.yaml"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	server, token, caFile := env.cp.Credentials()
	for _, sc := range cfg["scrape_configs"].([]any) {
		sc := sc.(map[string]any)
		sc["scrape_interval"] = "5s"
		for _, sd := range sc["kubernetes_sd_configs"].([]any) {
			sd := sd.(map[string]any)
			sd["api_server"] = server
			sd["authorization"] = map[string]any{"credentials": token}
			sd["tls_config"] = map[string]any{"ca_file": caFile}
		}
	}
	cfg["global"] = map[string]any{"scrape_interval": "5s", "evaluation_interval": "5s"}
	out, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	prom, err := harness.StartPrometheus(dir, string(out))
	require.NoError(t, err)
	t.Cleanup(prom.Stop)
	eventually(t, time.Minute, "Prometheus scrapes every gateway", func() (bool, string) {
		targets, err := prom.Targets()
		if err != nil {
			return false, err.Error()
		}
		up := map[string]bool{}
		for _, tg := range targets {
			if tg.Health == "up" && tg.Labels["job"] == "tailgate-telemetry" {
				up[tg.Labels["pod"]] = true
			}
		}
		for _, p := range readyPods(t, "tailgate-gateway") {
			if !up[p.Name] {
				return false, fmt.Sprintf("%s not scraped; targets %v", p.Name, targets)
			}
		}
		return true, ""
	})
	return prom
}

func hpa(t *testing.T) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	h, err := env.cp.Client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
	require.NoError(t, err)
	return h
}

func scalingActive(h *autoscalingv2.HorizontalPodAutoscaler) bool {
	for _, c := range h.Status.Conditions {
		if c.Type == autoscalingv2.ScalingActive {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hpaState(h *autoscalingv2.HorizontalPodAutoscaler) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "HPA current %d desired %d;", h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	for _, m := range h.Status.CurrentMetrics {
		if m.Pods != nil {
			fmt.Fprintf(&sb, " %s=%s", m.Pods.Metric.Name, m.Pods.Current.AverageValue)
		}
		if m.External != nil && m.External.Current.Value != nil {
			fmt.Fprintf(&sb, " %s=%s", m.External.Metric.Name, m.External.Current.Value)
		}
	}
	for _, c := range h.Status.Conditions {
		fmt.Fprintf(&sb, " %s=%s (%s: %s)", c.Type, c.Status, c.Reason, c.Message)
	}
	return sb.String()
}

// metricsAgreeWithPrometheus compares, for each metric of the HPA, what
// the adapter serves (per gateway, or the one external value) and what the
// HPA last read (the mean of the per-pod values, or the external value)
// with what Prometheus computes for the adapter rule's own query. The
// adapter is read at the same moment as Prometheus (within 5%); the HPA
// read it up to a sync period (5 s) earlier (within 15%).
func metricsAgreeWithPrometheus(t *testing.T, prom *harness.Prometheus, cfg render.AdapterRules) (bool, string) {
	t.Helper()
	gateways := readyPods(t, "tailgate-gateway")
	var names []string
	for _, p := range gateways {
		names = append(names, p.Name)
	}
	h := hpa(t)
	var report []string
	for _, m := range h.Status.CurrentMetrics {
		switch {
		case m.Pods != nil:
			name := m.Pods.Metric.Name
			i := slices.IndexFunc(cfg.Rules, func(r render.AdapterRule) bool { return r.Name.As == name })
			require.GreaterOrEqual(t, i, 0, "the HPA reads %s, which no rule serves", name)
			served := adapterValues(t, name)
			samples, err := prom.Query(cfg.Rules[i].Expand(namespace, names))
			if err != nil {
				return false, err.Error()
			}
			computed := map[string]float64{}
			var sum float64
			for _, s := range samples {
				computed[s.Labels["pod"]] = s.Value
				sum += s.Value
			}
			if len(computed) != len(gateways) || len(served) != len(gateways) {
				return false, fmt.Sprintf("%s: Prometheus has %d gateways, the adapter %d, %d ready", name, len(computed), len(served), len(gateways))
			}
			for pod, v := range served {
				if !near(v, computed[pod], 0.05) {
					return false, fmt.Sprintf("%s of %s: adapter %.1f, Prometheus %.1f", name, pod, v, computed[pod])
				}
			}
			mean := sum / float64(len(computed))
			hpaValue := m.Pods.Current.AverageValue.AsApproximateFloat64()
			if !near(hpaValue, mean, 0.15) {
				return false, fmt.Sprintf("%s: the HPA read %.1f, Prometheus computes %.1f", name, hpaValue, mean)
			}
			report = append(report, fmt.Sprintf("%s: HPA %.1f, Prometheus %.1f (adapter per pod within 5%%)", name, hpaValue, mean))
		case m.External != nil && m.External.Current.Value != nil:
			name := m.External.Metric.Name
			i := slices.IndexFunc(cfg.ExternalRules, func(r render.AdapterRule) bool { return r.Name.As == name })
			require.GreaterOrEqual(t, i, 0, "the HPA reads %s, which no external rule serves", name)
			served := externalValue(t, name)
			samples, err := prom.Query(cfg.ExternalRules[i].ExpandExternal(namespace))
			if err != nil {
				return false, err.Error()
			}
			if len(samples) != 1 {
				return false, fmt.Sprintf("%s: Prometheus returns %d values, want the one maximum", name, len(samples))
			}
			computed := samples[0].Value
			if !near(served, computed, 0.05) {
				return false, fmt.Sprintf("%s: adapter %.1f, Prometheus %.1f", name, served, computed)
			}
			hpaValue := m.External.Current.Value.AsApproximateFloat64()
			if !near(hpaValue, computed, 0.15) {
				return false, fmt.Sprintf("%s: the HPA read %.1f, Prometheus computes %.1f", name, hpaValue, computed)
			}
			report = append(report, fmt.Sprintf("%s: HPA %.1f, Prometheus %.1f (adapter within 5%%)", name, hpaValue, computed))
		}
	}
	return len(report) == 2, strings.Join(report, "; ")
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+1e-9
}

// adapterValues reads a metric of every gateway pod from the custom
// metrics API, as the HPA controller does, through the aggregation layer.
func adapterValues(t *testing.T, metric string) map[string]float64 {
	t.Helper()
	var list struct {
		Items []struct {
			DescribedObject struct{ Name string } `json:"describedObject"`
			Value           resource.Quantity     `json:"value"`
		} `json:"items"`
	}
	body, err := env.cp.Client.Discovery().RESTClient().Get().
		AbsPath("/apis/custom.metrics.k8s.io/v1beta1/namespaces", namespace, "pods", "*", metric).
		Param("labelSelector", "app.kubernetes.io/name=tailgate-gateway").DoRaw(ctx(t))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(body, &list))
	out := map[string]float64{}
	for _, it := range list.Items {
		out[it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
	}
	return out
}

// externalValue reads an external metric for the test namespace from the
// external metrics API, as the HPA controller does, through the
// aggregation layer: the sum of the items it returns (one, for a rule that
// takes the maximum).
func externalValue(t *testing.T, metric string) float64 {
	t.Helper()
	var list struct {
		Items []struct {
			Value resource.Quantity `json:"value"`
		} `json:"items"`
	}
	body, err := env.cp.Client.Discovery().RESTClient().Get().
		AbsPath("/apis/external.metrics.k8s.io/v1beta1/namespaces", namespace, metric).DoRaw(ctx(t))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(body, &list))
	var sum float64
	for _, it := range list.Items {
		sum += it.Value.AsApproximateFloat64()
	}
	return sum
}

// replicaChange is one moment of the replica timeline.
type replicaChange struct {
	at      time.Time
	desired int32 // the HPA's desired replicas
	ready   int   // ready gateway pods
	agents  []int // gateways in each agent's ring
}

type replicaTimeline struct {
	mu      sync.Mutex
	changes []replicaChange
	cancel  context.CancelFunc
	done    chan struct{}
}

// recordReplicas polls, every second, the HPA's desired replicas, the
// ready gateways and the agents' rings, and keeps each change.
func recordReplicas(t *testing.T) *replicaTimeline {
	c, cancel := context.WithCancel(context.Background())
	tl := &replicaTimeline{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		for ; c.Err() == nil; waitASecond(c) {
			now := replicaChange{at: time.Now(), ready: len(readyEndpointsQuiet())}
			h, err := env.cp.Client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(c, "tailgate-gateway", metav1.GetOptions{})
			if err != nil {
				// No reading, not a desired count of 0: the read fails
				// when stop cancels it, and the timeline's last entry is
				// what the test checks the HPA ended at.
				continue
			}
			now.desired = h.Status.DesiredReplicas
			for _, a := range agentAddressesQuiet() {
				if s, err := harness.ScrapeMetricsAt(a); err == nil {
					now.agents = append(now.agents, int(s.Sum("otelcol_loadbalancer_num_backends", "resolver", "k8s")))
				}
			}
			tl.mu.Lock()
			if n := len(tl.changes); n == 0 || tl.changes[n-1].desired != now.desired || tl.changes[n-1].ready != now.ready || !slices.Equal(tl.changes[n-1].agents, now.agents) {
				tl.changes = append(tl.changes, now)
			}
			tl.mu.Unlock()
		}
	}()
	t.Cleanup(func() { tl.stop() })
	return tl
}

// waitASecond waits a second between readings, or until c ends.
func waitASecond(c context.Context) {
	select {
	case <-c.Done():
	case <-time.After(time.Second):
	}
}

// stop ends the recording and returns the timeline.
func (tl *replicaTimeline) stop() []replicaChange {
	tl.cancel()
	<-tl.done
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.changes
}

// agentAddressesQuiet lists the agents' telemetry addresses, for a
// background goroutine.
func agentAddressesQuiet() []string {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(c, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tailgate-agent"})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range list.Items {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			out = append(out, p.Status.PodIP+":8888")
		}
	}
	slices.Sort(out)
	return out
}

// ramp sends traffic through the agents in chunks of chunkLength of trace
// starts, one chunk after the other at the rate of the current phase: a
// phase ends when its condition holds, checked between chunks, so the load
// changes without a gap.
type ramp struct {
	t       *testing.T
	agents  []string
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	plans   []harness.TracePlan
	sent    harness.SendResult
	errs    []error
	chunks  uint64
	stopped bool
	// bias: this share of each new chunk's traces get IDs the owner
	// function gives to gateway.
	owner    func(pcommon.TraceID) string
	gateway  string
	hotShare float64
}

const chunkLength = 5 * time.Second

// rampSeeds numbers the chunks' generator seeds across every ramp of the
// test binary (-count=n included): a trace ID sent again would meet its
// first run's decision in the gateways' decision caches.
var rampSeeds atomic.Uint64

func newRamp(t *testing.T) *ramp {
	// Bounded: no phase outlives its own limit, and nothing outlives this.
	c, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	return &ramp{t: t, agents: agentEndpoints(t), ctx: c, cancel: cancel}
}

// hold sends at rate (new traces per second) until done holds, for at most
// limit; past it the test fails.
func (r *ramp) hold(rate float64, limit time.Duration, what string, done func() (bool, string)) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		r.startChunk(rate)
		time.Sleep(chunkLength)
		ok, state := done()
		if ok {
			return
		}
		last = state
	}
	r.stop()
	r.t.Fatalf("%s: not after %s at %.0f traces/s (last state: %s)", what, limit, rate, last)
}

func (r *ramp) startChunk(rate float64) {
	r.t.Helper()
	gen := harness.DefaultGeneratorConfig()
	r.chunks++
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 1100+rampSeeds.Add(1), len(r.agents), rate, int(rate*chunkLength.Seconds())
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(r.t, err)
	if r.owner != nil {
		// New IDs from the chunk's own seed: never one sent before.
		rng := rand.New(rand.NewPCG(gen.Seed, 0xb1a5))
		for i := range plans {
			if rng.Float64() >= r.hotShare {
				continue
			}
			for {
				binary.BigEndian.PutUint64(plans[i].ID[:8], rng.Uint64())
				binary.BigEndian.PutUint64(plans[i].ID[8:], rng.Uint64()|1)
				if r.owner(plans[i].ID) == r.gateway {
					break
				}
			}
		}
	}
	r.mu.Lock()
	r.plans = append(r.plans, plans...)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		sent, err := harness.Send(r.ctx, plans, r.agents, nil)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.errs = append(r.errs, err)
		}
		r.sent.SpansSent += sent.SpansSent
		r.sent.SpansFailed += sent.SpansFailed
		for id := range sent.FailedTraces {
			if r.sent.FailedTraces == nil {
				r.sent.FailedTraces = map[pcommon.TraceID]bool{}
			}
			r.sent.FailedTraces[id] = true
		}
	}()
}

// bias sends, from the next chunk on, share of the new traces with IDs that
// owner gives to gateway; a nil owner ends the bias.
func (r *ramp) bias(owner func(pcommon.TraceID) string, gateway string, share float64) {
	r.owner, r.gateway, r.hotShare = owner, gateway, share
}

// stop waits for the chunks in flight and returns what was planned and
// sent; the agents may not have refused a span.
func (r *ramp) stop() ([]harness.TracePlan, harness.SendResult) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, harness.SendResult{}
	}
	r.stopped = true
	r.mu.Unlock()
	start := time.Now()
	r.wg.Wait()
	r.cancel()
	r.sent.Elapsed = time.Duration(r.chunks)*chunkLength + time.Since(start)
	require.Empty(r.t, r.errs)
	require.Zero(r.t, r.sent.SpansFailed, "agents refused spans")
	return r.plans, r.sent
}
