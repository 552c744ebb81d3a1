package live

// Helpers every test of the package uses: waiting, reading pods and
// EndpointSlices, and waiting for the gateway set to settle.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
)

// decisionWait is the gateway profile's default, which the manifests keep.
const decisionWait = 10 * time.Second

// eventually polls cond every 250ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if ok, last := harness.Poll(timeout, 250*time.Millisecond, cond); !ok {
		t.Fatalf("%s: not after %s (last state: %s)\n%s\n%s", what, timeout, last, env.cp.Logs(15), env.nodes.LogTails(15))
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func pods(t *testing.T, selector string) []corev1.Pod {
	t.Helper()
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(ctx(t), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	return list.Items
}

// readyPods lists the ready pods of a component, sorted by name.
func readyPods(t *testing.T, name string) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	for _, p := range pods(t, "app.kubernetes.io/name="+name) {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		if podReady(p) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// podReady reports the pod's Ready condition.
func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyEndpoints lists the ready addresses of the gateways' headless Service.
func readyEndpoints(t *testing.T) []string {
	t.Helper()
	out, err := gatewayEndpoints(ctx(t))
	require.NoError(t, err)
	return out
}

// readyEndpointsQuiet is readyEndpoints for a background goroutine.
func readyEndpointsQuiet() []string {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := gatewayEndpoints(c)
	return out
}

func gatewayEndpoints(c context.Context) ([]string, error) {
	slices, err := env.cp.Client.DiscoveryV1().EndpointSlices(namespace).List(c, metav1.ListOptions{
		LabelSelector: "kubernetes.io/service-name=tailgate-gateway-headless",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	return out, nil
}

func scrapePod(t *testing.T, p corev1.Pod) harness.Scrape {
	t.Helper()
	s, err := harness.ScrapeMetricsAt(net.JoinHostPort(p.Status.PodIP, "8888"))
	require.NoError(t, err, "telemetry of %s", p.Name)
	return s
}

// agentsSeeGateways waits until every agent's ring, on the given resolver,
// holds n gateways.
func agentsSeeGateways(t *testing.T, n int, resolver string) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("every agent's load balancer has %d gateways", n), func() (bool, string) {
		seen := agentRingSizes(resolver)
		return ringsHold(seen, n), fmt.Sprint(seen)
	})
}

// agentRingSizes are the agents' ring sizes on a resolver (the
// loadbalancing exporter's backend count); nil when one cannot be read.
func agentRingSizes(resolver string) []float64 {
	var seen []float64
	for _, addr := range agentAddressesQuiet() {
		s, err := harness.ScrapeMetricsAt(addr)
		if err != nil {
			return nil
		}
		seen = append(seen, s.Sum("otelcol_loadbalancer_num_backends", "resolver", resolver))
	}
	return seen
}

// ringsHold: both agents' rings hold n gateways.
func ringsHold(sizes []float64, n int) bool {
	for _, v := range sizes {
		if v != float64(n) {
			return false
		}
	}
	return len(sizes) == 2
}

// settleGateways waits until the Deployment has exactly n ready gateways,
// nothing terminating, and every agent's ring (on the given resolver) holds
// them.
func settleGateways(t *testing.T, n int, resolver string) {
	t.Helper()
	_, err := env.cp.Kubectl("-n", namespace, "rollout", "status", "deployment/tailgate-gateway", "--timeout=4m")
	require.NoError(t, err)
	eventually(t, 3*time.Minute, fmt.Sprintf("%d gateway pods, none terminating", n), func() (bool, string) {
		ps := pods(t, "app.kubernetes.io/name=tailgate-gateway")
		return len(ps) == n && len(readyPods(t, "tailgate-gateway")) == n, fmt.Sprint(len(ps), " pods")
	})
	agentsSeeGateways(t, n, resolver)
}

// setGatewayArgs replaces the gateways' arguments that start with each
// prefix's key by the given one (a --set flag, "--set=key=value"), and
// appends those not there yet: the gateways roll onto them.
func setGatewayArgs(t *testing.T, args ...string) {
	t.Helper()
	deployments := env.cp.Client.AppsV1().Deployments(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deployments.Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := &d.Spec.Template.Spec.Containers[0]
		for _, arg := range args {
			key, _, _ := strings.Cut(strings.TrimPrefix(arg, "--set="), "=")
			c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--set="+key+"=") })
			c.Args = append(c.Args, arg)
		}
		_, err = deployments.Update(ctx(t), d, metav1.UpdateOptions{})
		return err
	})
	require.NoError(t, err)
}

// guardArgs turn every gateway's rebalance_guard (whichever resolver) on
// or off.
func guardArgs(enabled bool) []string {
	return []string{"--set=" + harness.GuardSet("dns", enabled), "--set=" + harness.GuardSet("k8s", enabled)}
}

// useResolver switches the agents and the gateways to resolver (k8s or
// dns) and waits until the agents' rings hold the n gateways again.
func useResolver(t *testing.T, resolver string, n int) {
	t.Helper()
	for _, w := range []string{"daemonset/tailgate-agent", "deployment/tailgate-gateway"} {
		_, err := env.cp.Kubectl("-n", namespace, "set", "env", w, "TAILGATE_GATEWAY_RESOLVER="+resolver)
		require.NoError(t, err)
	}
	_, err := env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
	require.NoError(t, err)
	settleGateways(t, n, resolver)
}

// sendThroughAgents sends plans through the two agents while running
// events at offsets from the start, and returns once both are done; no
// agent may refuse a span.
func sendThroughAgents(t *testing.T, plans []harness.TracePlan, events map[time.Duration]func()) harness.SendResult {
	t.Helper()
	return sendTo(t, agentEndpoints(t), plans, events)
}

// sendTo is sendThroughAgents through the given agents' endpoints.
func sendTo(t *testing.T, agents []string, plans []harness.TracePlan, events map[time.Duration]func()) harness.SendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wait := harness.RunAt(ctx, events)
	sent, err := harness.Send(ctx, plans, agents, nil)
	require.NoError(t, err)
	wait()
	require.Zero(t, sent.SpansFailed, "agents refused spans: %v", sent.FailedBy)
	return sent
}

// agentEndpoints are the OTLP/gRPC endpoints of the two ready agent pods.
func agentEndpoints(t *testing.T) []string {
	t.Helper()
	var agents []string
	for _, a := range readyPods(t, "tailgate-agent") {
		agents = append(agents, net.JoinHostPort(a.Status.PodIP, "4317"))
	}
	require.Len(t, agents, 2)
	return agents
}

func ptr[T any](v T) *T { return &v }

// requireWhole waits until every error and slow trace of plans arrived
// complete and none partially, and reports each kind's outcome.
func requireWhole(t *testing.T, what string, plans []harness.TracePlan, sent harness.SendResult) {
	t.Helper()
	requireWholeAt(t, what, plans, sent, env.sink)
}

// requireWholeAt is requireWhole at another backend than the suite's sink.
func requireWholeAt(t *testing.T, what string, plans []harness.TracePlan, sent harness.SendResult, backend harness.Backend) {
	t.Helper()
	var ev harness.Evaluation
	eventually(t, decisionWait+2*time.Minute, what+": every error and slow trace complete, none partial", func() (bool, string) {
		ev = harness.Evaluate(plans, sent, backend)
		b := ev.Breaches()
		return len(b) == 0, strings.Join(b, "; ")
	})
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("REPORT %s: %-6s sent %4d complete %4d partial %d lost %4d", what, k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
}

// brokenInteresting counts the error and slow traces that arrived partial
// or not at all, and those sent.
func brokenInteresting(ev harness.Evaluation) (broken, sent int) {
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		broken, sent = broken+o.Partial+o.Lost, sent+o.Sent
	}
	return broken, sent
}

// rollout is what rollGatewaysUnderTraffic saw: when the change was made
// and the rollout complete (zero: it did not complete), and the gateway
// pods' timeline.
type rollout struct {
	start              time.Time
	traffic            time.Duration
	rate               float64
	applied, rolledOut time.Duration
	events             []podEvent
}

// rollGatewaysUnderTraffic sends plans (at rate traces/s) through the
// agents and, 10s in, makes change, a change that rolls the gateways, and
// waits for their rollout; then waits for the gateways to settle. The
// rollout must end before the traffic does.
func rollGatewaysUnderTraffic(t *testing.T, plans []harness.TracePlan, rate float64, change func() error) (harness.SendResult, rollout) {
	t.Helper()
	r := rollout{traffic: time.Duration(float64(len(plans)) / rate * float64(time.Second)), rate: rate}
	timeline := watchGatewayPods(t)
	r.start = time.Now()
	sent := sendThroughAgents(t, plans, map[time.Duration]func(){10 * time.Second: func() {
		r.applied = time.Since(r.start)
		if err := change(); err != nil {
			t.Errorf("the change that rolls the gateways: %v", err)
			return
		}
		if _, err := env.cp.Kubectl("-n", namespace, "rollout", "status", "deployment/tailgate-gateway", "--timeout=3m"); err != nil {
			t.Errorf("rollout: %v", err)
			return
		}
		r.rolledOut = time.Since(r.start)
	}})
	settleGateways(t, 3, "k8s")
	r.events = timeline.stop()
	if r.rolledOut != 0 {
		require.Less(t, r.rolledOut, r.traffic, "the rollout must happen under traffic")
	}
	return sent, r
}

// report logs the rollout's timeline as REPORT lines headed what.
func (r rollout) report(t *testing.T, what string) {
	t.Helper()
	t.Logf("REPORT %s: traffic %s at %.0f traces/s; changed at %s, rollout complete at %s",
		what, r.traffic.Round(time.Second), r.rate, r.applied.Round(time.Second), r.rolledOut.Round(time.Second))
	for _, e := range r.events {
		t.Logf("REPORT %s: %6s %s", what, e.at.Sub(r.start).Round(100*time.Millisecond), e.what)
	}
}

// startPausePod runs a pod of one container that only runs (the nodes
// have the pause image) in namespace ns, with labels, on node, and waits
// until it is ready; the test deletes it at its end. Tests dial from its
// network namespace (dialerFrom) as its application would.
func startPausePod(t *testing.T, ns, name string, labels map[string]string, node string) corev1.Pod {
	t.Helper()
	pods := env.cp.Client.CoreV1().Pods(ns)
	_, err := pods.Create(ctx(t), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       pausePodSpec(node),
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	})
	var pod corev1.Pod
	eventually(t, 2*time.Minute, name+" running with an IP", func() (bool, string) {
		p, err := pods.Get(ctx(t), name, metav1.GetOptions{})
		if err != nil || p.Status.PodIP == "" || !podReady(*p) {
			return false, fmt.Sprint(err)
		}
		pod = *p
		return true, ""
	})
	return pod
}

// pausePodSpec is an application pod's spec: one container that only runs,
// Restricted as the suite's namespace enforces, on node (any when empty).
func pausePodSpec(node string) corev1.PodSpec {
	return corev1.PodSpec{
		NodeName:                      node,
		TerminationGracePeriodSeconds: ptr(int64(0)),
		// The pause image's user is 65535.
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{Name: "app", Image: cluster.PauseImage, SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}}},
	}
}

// dialerFrom dials from pod's network namespace.
func dialerFrom(t *testing.T, pod corev1.Pod) func(ctx context.Context, addr string) (net.Conn, error) {
	t.Helper()
	dial, err := env.nodes.Node(pod.Spec.NodeName).DialFromPod(&pod, pod.Status.ContainerStatuses[0].ContainerID)
	require.NoError(t, err)
	return dial
}
