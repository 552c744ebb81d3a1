package live

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// sendAndCheck drives traces through the agent pods and waits until every
// error and slow trace has reached the backend complete and none in part. It
// returns the traces each gateway pod received, by pod name.
func sendAndCheck(t *testing.T, seed uint64) map[string]float64 {
	t.Helper()
	gateways := readyPods(t, "tailgate-gateway")
	before := map[string]float64{}
	for _, g := range gateways {
		before[g.Name] = scrapePod(t, g).Sum(harness.MetricNewTraces)
	}
	agents := agentEndpoints(t)
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Traces, gen.Rate, gen.Agents = seed, 400, 100, 2
	gen.ErrorRatio, gen.SlowRatio = 0.2, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent, err := harness.Send(c, plans, agents, nil)
	require.NoError(t, err)
	require.Zero(t, sent.SpansFailed)

	eventually(t, decisionWait+time.Minute, "every error and slow trace complete at the backend, none partial", func() (bool, string) {
		breaches := harness.Evaluate(plans, sent, env.sink).Breaches()
		return len(breaches) == 0, strings.Join(breaches, "; ")
	})
	got := map[string]float64{}
	for _, g := range gateways {
		got[g.Name] = scrapePod(t, g).Sum(harness.MetricNewTraces) - before[g.Name]
	}
	return got
}

// TestAgentsRouteThroughEndpointSlices: agents started from the DaemonSet
// resolve the gateways through the headless Service's EndpointSlices (k8s
// resolver, with their own ServiceAccount's token) and traces flow whole
// to every gateway.
func TestAgentsRouteThroughEndpointSlices(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s")
	perGateway := sendAndCheck(t, 11)
	require.Len(t, perGateway, 3)
	for name, n := range perGateway {
		assert.Positive(t, n, "gateway %s received no traces", name)
	}
}

// TestScaleGatewayDeployment: `kubectl scale` adds a real gateway; the
// endpointslice controller publishes it, the agents' rings follow, and it
// receives its share. Scaling back removes it (through preStop and the
// grace period) and traffic keeps flowing whole.
func TestScaleGatewayDeployment(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s")
	_, err := env.cp.Kubectl("-n", namespace, "scale", "deployment/tailgate-gateway", "--replicas=4")
	require.NoError(t, err)
	eventually(t, 2*time.Minute, "4 ready gateway endpoints", func() (bool, string) {
		n := readyEndpoints(t)
		return len(n) == 4, fmt.Sprint(n)
	})
	agentsSeeGateways(t, 4, "k8s")
	perGateway := sendAndCheck(t, 12)
	require.Len(t, perGateway, 4)
	for name, n := range perGateway {
		assert.Positive(t, n, "gateway %s received no traces after the scale-out", name)
	}

	_, err = env.cp.Kubectl("-n", namespace, "scale", "deployment/tailgate-gateway", "--replicas=3")
	require.NoError(t, err)
	eventually(t, time.Minute, "3 ready gateway endpoints", func() (bool, string) {
		n := readyEndpoints(t)
		return len(n) == 3, fmt.Sprint(n)
	})
	agentsSeeGateways(t, 3, "k8s")
	eventually(t, 2*time.Minute, "the removed gateway's pod is gone (preStop, then shutdown)", func() (bool, string) {
		n := len(pods(t, "app.kubernetes.io/name=tailgate-gateway"))
		return n == 3, fmt.Sprint(n, " pods")
	})
	perGateway = sendAndCheck(t, 13)
	assert.Len(t, perGateway, 3)
}

// TestK8sAttributesEnrichesFromTheConnection: spans an application pod
// sends to the agent on its node leave the agent with the pod's namespace,
// name, uid, node and Deployment, looked up by the connection's address.
func TestK8sAttributesEnrichesFromTheConnection(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s") // the base is up: an agent on every node
	c := env.cp.Client
	_, err := c.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	labels := map[string]string{"app": "checkout"}
	_, err = c.AppsV1().Deployments("shop").Create(ctx(t), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				// The application; the test dials from its network namespace.
				Spec: pausePodSpec(""),
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	var app corev1.Pod
	eventually(t, time.Minute, "application pod running with an IP", func() (bool, string) {
		list, err := c.CoreV1().Pods("shop").List(ctx(t), metav1.ListOptions{LabelSelector: "app=checkout"})
		if err != nil || len(list.Items) != 1 || list.Items[0].Status.PodIP == "" || !podReady(list.Items[0]) {
			return false, fmt.Sprint(err)
		}
		app = list.Items[0]
		return true, ""
	})
	var agent corev1.Pod
	for _, a := range readyPods(t, "tailgate-agent") {
		if a.Spec.NodeName == app.Spec.NodeName {
			agent = a
		}
	}
	require.NotEmpty(t, agent.Name, "no agent on node %s", app.Spec.NodeName)

	// An error trace, so the gateway keeps it, sent from the application
	// pod's network namespace, as its SDK would.
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	traceID := pcommon.TraceID([16]byte{0xc0, 0xff, 0xee, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	var spanIDs []pcommon.SpanID
	for i := range 3 {
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		id := pcommon.SpanID([8]byte{0xab, byte(i + 1)})
		spanIDs = append(spanIDs, id)
		sp.SetTraceID(traceID)
		sp.SetSpanID(id)
		sp.SetName("PlaceOrder")
		now := time.Now()
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-50 * time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		if i == 2 {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	conn, err := grpc.NewClient(net.JoinHostPort(agent.Status.PodIP, "4317"),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialerFrom(t, app)))
	require.NoError(t, err)
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx(t), ptraceotlp.NewExportRequestFromTraces(td))
	require.NoError(t, err)

	eventually(t, decisionWait+time.Minute, "the trace at the backend", func() (bool, string) {
		n := len(env.sink.SpansOf(traceID))
		return n == 3, fmt.Sprint(n, " spans")
	})
	want := map[string]string{
		"k8s.namespace.name":  "shop",
		"k8s.pod.name":        app.Name,
		"k8s.pod.uid":         string(app.UID),
		"k8s.node.name":       app.Spec.NodeName,
		"k8s.deployment.name": "checkout",
		// From the tailgate-cluster ConfigMap, through the kubelet.
		"k8s.cluster.name": clusterName,
	}
	for _, id := range spanIDs {
		for key, v := range want {
			got, ok := env.sink.ResourceAttr(id, key)
			assert.True(t, ok, "span %s lacks %s", id, key)
			assert.Equal(t, v, got, "span %s %s", id, key)
		}
	}
}
