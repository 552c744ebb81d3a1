package live

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// tlsSecret is a Secret of the shape cert-manager writes (and the mtls
// component mounts): tls.crt, tls.key and ca.crt.
func tlsSecret(t *testing.T, name string, ca *harness.CA, leaf harness.Leaf) {
	t.Helper()
	_, err := env.cp.Client.CoreV1().Secrets(namespace).Create(ctx(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       ca.SecretData(leaf),
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// TestMTLSBetweenTheTiers applies the mtls component on the real control
// plane: cert-manager's own CRDs are installed so that
// the component's Issuers and Certificates are checked against its schemas
// (strict field validation), and the test makes the two Secrets that
// cert-manager would (it does not run here). The agents and gateways roll
// onto mutual TLS; then, under traffic through the agents, the gateways
// scale out 3 -> 4 and back: every error and slow trace arrives whole,
// every gateway (the new one too) accepted the agents' certificates and
// refused none, and a plaintext client straight at a gateway pod is
// refused and counted (the test's client and scrapes are not pods: with
// the network-policies component, the nodes would drop them;
// TestNetworkPoliciesEnforced tests it).
func TestMTLSBetweenTheTiers(t *testing.T) {
	settleGateways(t, 3, "k8s")
	crds, err := harness.CertManagerCRDs()
	require.NoError(t, err)
	_, err = env.cp.Kubectl("apply", "--server-side", "--field-manager=tailgate-test",
		"-f", filepath.Join(crds, "cert-manager.io_certificates.yaml"), "-f", filepath.Join(crds, "cert-manager.io_issuers.yaml"))
	require.NoError(t, err)
	_, err = env.cp.Kubectl("wait", "--for=condition=established", "--timeout=1m", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io")
	require.NoError(t, err)

	ca, err := harness.NewCA("tailgate-ca")
	require.NoError(t, err)
	gatewayLeaf, err := ca.Issue("tailgate-gateway", time.Now().Add(24*time.Hour), harness.GatewayServerName)
	require.NoError(t, err)
	agentLeaf, err := ca.Issue("tailgate-agent", time.Now().Add(24*time.Hour))
	require.NoError(t, err)
	tlsSecret(t, "tailgate-gateway-tls", ca, gatewayLeaf)
	tlsSecret(t, "tailgate-agent-tls", ca, agentLeaf)
	t.Cleanup(func() {
		require.NoError(t, applyBase())
		_, err := env.cp.Kubectl("-n", namespace, "delete", "certificates.cert-manager.io,issuers.cert-manager.io,secrets",
			"--all", "--ignore-not-found")
		assert.NoError(t, err)
		_, err = env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
		assert.NoError(t, err)
		settleGateways(t, 3, "k8s")
	})

	start := time.Now()
	require.NoError(t, applyOverlay([]string{"mtls"}, nil))
	_, err = env.cp.Kubectl("-n", namespace, "rollout", "status", "daemonset/tailgate-agent", "--timeout=3m")
	require.NoError(t, err)
	settleGateways(t, 3, "k8s")
	t.Logf("REPORT mtls: both tiers rolled onto mutual TLS and ready in %s", time.Since(start).Round(time.Second))

	out, err := env.cp.Kubectl("-n", namespace, "get", "certificates.cert-manager.io,issuers.cert-manager.io", "-o", "name")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		"certificate.cert-manager.io/tailgate-ca", "certificate.cert-manager.io/tailgate-gateway", "certificate.cert-manager.io/tailgate-agent",
		"issuer.cert-manager.io/tailgate-selfsigned", "issuer.cert-manager.io/tailgate-ca",
	}, strings.Fields(string(out)), "the component's cert-manager objects, accepted by cert-manager's schemas")

	// Refusals while the tiers switched (the old plaintext agents reach
	// the new mTLS gateways until they roll too) are the rollout's; from
	// here on, none is expected.
	switched := handshakes(t)
	for pod, h := range switched {
		t.Logf("REPORT mtls: while the tiers switched, gateway %s refused %v", pod, h.refused)
	}

	time.Sleep(decisionWait) // earlier tests' traces decided
	env.sink.Reset()
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 1201, 2, 30, 30*45
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	kubectl := func(args ...string) func() {
		return func() {
			if _, err := env.cp.Kubectl(append([]string{"-n", namespace}, args...)...); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	var scaledOut map[string]handshakeCounts
	sent := sendThroughAgents(t, plans, map[time.Duration]func(){
		8 * time.Second: kubectl("scale", "deployment/tailgate-gateway", "--replicas=4"),
		// Four ready gateways by now: the new one's handshakes too.
		22 * time.Second: func() { scaledOut = handshakes(t) },
		25 * time.Second: kubectl("scale", "deployment/tailgate-gateway", "--replicas=3"),
	})
	settleGateways(t, 3, "k8s")
	eventually(t, decisionWait+time.Minute, "every error and slow trace complete at the backend, none partial", func() (bool, string) {
		breaches := harness.Evaluate(plans, sent, env.sink).Breaches()
		return len(breaches) == 0, strings.Join(breaches, "; ")
	})
	ev := harness.Evaluate(plans, sent, env.sink)
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("REPORT mtls scale-out 3->4->3: %-6s sent %4d complete %4d partial %d lost %d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}

	require.Len(t, scaledOut, 4, "four ready gateways after the scale-out")
	for pod, h := range scaledOut {
		t.Logf("REPORT mtls: 4 gateways, %s accepted %.0f handshakes", pod, h.accepted)
		assert.GreaterOrEqual(t, h.accepted, 2.0, "%s: both agents connected over mutual TLS", pod)
	}
	gateways := readyPods(t, "tailgate-gateway")
	for pod, h := range handshakes(t) {
		refused := h.total() - switched[pod].total()
		assert.Zero(t, refused, "%s refused a handshake under traffic: %v", pod, h.refused)
	}

	target := gateways[0]
	id, err := harness.ExportForgedError(net.JoinHostPort(target.Status.PodIP, "4317"), insecure.NewCredentials())
	assert.Error(t, err, "a plaintext client is refused")
	eventually(t, 30*time.Second, "the refusal is counted", func() (bool, string) {
		n := scrapePod(t, target).Sum(harness.MetricHandshakesRefused, "reason", "not_tls")
		return n > 0, fmt.Sprint(n)
	})
	time.Sleep(decisionWait)
	assert.Empty(t, env.sink.SpansOf(id), "the plaintext client's span reached the backend")
	_, err = net.DialTimeout("tcp", net.JoinHostPort(target.Status.PodIP, "4318"), time.Second)
	assert.Error(t, err, "the gateways' OTLP/HTTP port is closed")
}

// handshakeCounts is one gateway's mtls_server counters.
type handshakeCounts struct {
	accepted float64
	refused  map[string]float64 // by reason
}

func (h handshakeCounts) total() float64 {
	var n float64
	for _, v := range h.refused {
		n += v
	}
	return n
}

// handshakes reads every ready gateway's counters, by pod name. Safe in an
// event of sendThroughAgents: it reports failures with t.Errorf.
func handshakes(t *testing.T) map[string]handshakeCounts {
	out := map[string]handshakeCounts{}
	list, err := gatewayPodList(context.Background())
	if err != nil {
		t.Errorf("listing gateways: %v", err)
		return out
	}
	for _, p := range list {
		if !podReady(p) {
			continue
		}
		s, err := harness.ScrapeMetricsAt(net.JoinHostPort(p.Status.PodIP, "8888"))
		if err != nil {
			t.Errorf("telemetry of %s: %v", p.Name, err)
			continue
		}
		out[p.Name] = handshakeCounts{
			accepted: s.Sum(harness.MetricHandshakesAccepted),
			refused:  s.LabelValues(harness.MetricHandshakesRefused, "reason"),
		}
	}
	return out
}

// TestNetworkPoliciesEnforced applies the network-policies component on
// nodes that enforce NetworkPolicies (kube-router, test/k8s/cluster).
// Before it, an application pod (any pod that is not an agent) opens
// connections to a gateway's OTLP and telemetry ports, so what refuses
// them after is the policies. With it, the application pod cannot; it
// still sends through both agents, which deliver every error and slow
// trace whole through the gateways; and a pod in the monitoring namespace,
// where the component expects Prometheus, still scrapes a gateway's
// telemetry.
func TestNetworkPoliciesEnforced(t *testing.T) {
	require.NoError(t, env.nodes.EnforceNetworkPolicies())
	settleGateways(t, 3, "k8s")
	_, err := env.cp.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	gateway := readyPods(t, "tailgate-gateway")[0]
	// On the other node than the gateway's: the policy holds across nodes.
	other := env.nodes.NodeNames()[0]
	if other == gateway.Spec.NodeName {
		other = env.nodes.NodeNames()[1]
	}
	app := startPausePod(t, namespace, "application", map[string]string{"app.kubernetes.io/name": "application"}, other)
	scraper := startPausePod(t, "monitoring", "scraper", map[string]string{"app.kubernetes.io/name": "prometheus"}, other)
	fromApp, fromScraper := dialerFrom(t, app), dialerFrom(t, scraper)
	otlp, telemetry := net.JoinHostPort(gateway.Status.PodIP, "4317"), net.JoinHostPort(gateway.Status.PodIP, "8888")
	opens := func(dial func(context.Context, string) (net.Conn, error), addr string) bool {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := dial(c, addr)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	require.True(t, opens(fromApp, otlp), "without policies, any pod reaches the gateway's OTLP port")
	require.True(t, opens(fromApp, telemetry), "without policies, any pod reaches the gateway's telemetry")
	agents := agentEndpoints(t)
	for _, a := range agents {
		require.True(t, opens(fromApp, a), "without policies, the application pod reaches agent %s", a)
	}

	t.Cleanup(func() {
		_, err := env.cp.Kubectl("-n", namespace, "delete", "networkpolicies", "--all", "--ignore-not-found")
		assert.NoError(t, err)
		// The nodes drop the rules asynchronously: the next tests scrape the
		// gateways from the test's process, which the policies refuse.
		eventually(t, time.Minute, "the gateways' telemetry open to the test again", func() (bool, string) {
			for _, g := range readyPods(t, "tailgate-gateway") {
				conn, err := net.DialTimeout("tcp", net.JoinHostPort(g.Status.PodIP, "8888"), time.Second)
				if err != nil {
					return false, err.Error()
				}
				conn.Close()
			}
			return true, ""
		})
	})
	require.NoError(t, applyOverlay([]string{"network-policies"}, nil))
	start := time.Now()
	t.Run("network policies select the running pods", func(t *testing.T) {
		list, err := env.cp.Client.NetworkingV1().NetworkPolicies(namespace).List(ctx(t), metav1.ListOptions{})
		require.NoError(t, err)
		byName := map[string]networkingv1.NetworkPolicy{}
		for _, p := range list.Items {
			byName[p.Name] = p
		}
		require.Len(t, byName, 2)
		selected := func(sel metav1.LabelSelector) []string {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			require.NoError(t, err)
			var names []string
			for _, p := range pods(t, s.String()) {
				names = append(names, p.Name)
			}
			return names
		}
		gws, ags := readyPods(t, "tailgate-gateway"), readyPods(t, "tailgate-agent")
		assert.Len(t, selected(byName["tailgate-gateway"].Spec.PodSelector), len(gws))
		assert.Len(t, selected(byName["tailgate-agent"].Spec.PodSelector), len(ags))
		from := byName["tailgate-gateway"].Spec.Ingress[0].From[0].PodSelector
		require.NotNil(t, from)
		assert.Len(t, selected(*from), len(ags), "the gateways admit OTLP from every agent pod")
	})

	eventually(t, time.Minute, "the application pod refused at the gateway's OTLP port", func() (bool, string) {
		return !opens(fromApp, otlp), ""
	})
	t.Logf("REPORT network policies: enforced %s after they were applied", time.Since(start).Round(100*time.Millisecond))
	assert.False(t, opens(fromApp, telemetry), "a pod outside the monitoring namespace reaches the gateway's telemetry")

	scrape := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(c context.Context, _, addr string) (net.Conn, error) { return fromScraper(c, addr) },
	}}
	resp, err := scrape.Get("http://" + telemetry + "/metrics")
	require.NoError(t, err, "a pod of the monitoring namespace scrapes the gateway's telemetry")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "otelcol_process_uptime", "the gateway's own metrics")

	// Applications (any pod) reach the agents. The nodes' policy provider
	// installs each policy's rules on its own sync: one make test found an
	// agent dropping the application's connection moments after the apply,
	// and the send's gRPC connection to that agent failed for the whole
	// send. So this waits (a minute at most) until every agent admits the
	// application, and only then starts the traffic.
	eventually(t, time.Minute, "the application pod reaching every agent's OTLP port", func() (bool, string) {
		for _, a := range agents {
			if !opens(fromApp, a) {
				return false, "agent " + a + " does not accept the application's connection"
			}
		}
		return true, ""
	})
	t.Logf("REPORT network policies: every agent open to the application %s after they were applied", time.Since(start).Round(100*time.Millisecond))

	// The traffic, from the application pod through both agents.
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 1301, 2, 30, 30*15
	gen.ErrorRatio, gen.SlowRatio = 0.1, 0.1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	time.Sleep(decisionWait) // earlier tests' traces decided
	env.sink.Reset()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sent, err := harness.SendWith(c, plans, harness.SendConfig{
		Targets:     agents,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(fromApp)},
	})
	require.NoError(t, err)
	require.Zero(t, sent.SpansFailed, "the agents refused the application's spans: %v", sent.FailedBy)
	requireWhole(t, "network policies enforced", plans, sent)
}
