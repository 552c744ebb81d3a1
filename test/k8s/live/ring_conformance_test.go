package live

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// The hand-made gateway set of TestGuardRingFollowsTheAgentsK8sResolver:
// real gateway and agent processes on addresses of the sandbox's loopback,
// listed in EndpointSlices the test writes itself, the way the
// endpointslice controller would in a dual-stack cluster.
const conformanceOTLPPort = 4317

var conformance = types.NamespacedName{Namespace: "ring-conformance", Name: "gw"}

type conformanceNode struct {
	name, ip string
	ports    harness.NodePorts
	proc     *harness.Process
}

func (n *conformanceNode) endpoint() string {
	return net.JoinHostPort(n.ip, strconv.Itoa(conformanceOTLPPort))
}

func (n *conformanceNode) scrape(t *testing.T) harness.Scrape {
	t.Helper()
	s, err := harness.ScrapeMetricsAt(net.JoinHostPort(n.ip, strconv.Itoa(n.ports.Telemetry)))
	require.NoError(t, err, "telemetry of %s", n.name)
	return s
}

// startConformanceNode runs a collector from a shipped profile on ip, with
// both its agents' ring and its guard's ring from the k8s resolver on the
// Service svc (namespace/name), reaching the API server through the admin
// kubeconfig.
func startConformanceNode(t *testing.T, svc types.NamespacedName, profile, name, ip string) *conformanceNode {
	t.Helper()
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	ports, err := harness.PickPorts()
	require.NoError(t, err)
	ports.OTLPGRPC = conformanceOTLPPort // every gateway on the one port the resolver lists
	ports.Host = ip
	vars := ports.Env(profile)
	for k, v := range map[string]string{
		"KUBECONFIG":                   env.cp.Kubeconfig,
		"TAILGATE_GATEWAY_RESOLVER":    "k8s",
		"TAILGATE_GATEWAY_K8S_SERVICE": svc.Name + "." + svc.Namespace,
		"TAILGATE_GATEWAY_OTLP_PORT":   strconv.Itoa(conformanceOTLPPort),
	} {
		vars[k] = v
	}
	set := []string{harness.AgentPassthrough}
	if profile == "gateway" {
		set = append(harness.StorageSet(t.TempDir()), "exporters::otlp_grpc/backend_memory::endpoint="+env.sink.Endpoint())
	}
	n := &conformanceNode{name: name, ip: ip, ports: ports}
	n.proc, err = harness.StartProcess(bin, harness.ProcessSpec{
		Name: name, Args: ports.Args(profile, harness.ProfilePath(profile), nil, set...), Env: vars,
		HealthHost: ip, HealthPort: ports.Health, LogDir: filepath.Join(t.TempDir(), "logs"),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, n.proc.LogTail(30))
		}
		_ = n.proc.Stop(10 * time.Second)
	})
	require.NoError(t, n.proc.WaitHealthy(time.Minute), n.proc.LogTail(30))
	return n
}

// conformanceSlice is an EndpointSlice of the Service svc, as the test
// writes it.
func conformanceSlice(svc types.NamespacedName, name string, family discoveryv1.AddressType, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: svc.Namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc.Name,
			discoveryv1.LabelManagedBy:   "tailgate-test", // not the endpointslice controller's
		}},
		AddressType: family,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("otlp-grpc"), Port: ptr(int32(conformanceOTLPPort)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
}

func conformanceEndpoint(ready bool, nodes ...*conformanceNode) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
	for _, n := range nodes {
		ep.Addresses = append(ep.Addresses, n.ip)
	}
	return ep
}

// headlessServiceOfOwnSlices creates the headless Service svc with no
// selector (its namespace too, if needed): the test writes its
// EndpointSlices, through the client returned. Both go when the test ends.
func headlessServiceOfOwnSlices(t *testing.T, svc types.NamespacedName) discoveryclient.EndpointSliceInterface {
	t.Helper()
	c := ctx(t)
	_, err := env.cp.Client.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: svc.Namespace}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	_, err = env.cp.Client.CoreV1().Services(svc.Namespace).Create(c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, // headless, no selector: the test writes the slices
			IPFamilyPolicy: ptr(corev1.IPFamilyPolicySingleStack),
			Ports:          []corev1.ServicePort{{Name: "otlp-grpc", Port: conformanceOTLPPort}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	slices := env.cp.Client.DiscoveryV1().EndpointSlices(svc.Namespace)
	t.Cleanup(func() {
		_ = slices.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = env.cp.Client.CoreV1().Services(svc.Namespace).Delete(context.Background(), svc.Name, metav1.DeleteOptions{})
	})
	return slices
}

// TestGuardRingFollowsTheAgentsK8sResolver: same EndpointSlices, same ring.
// The agents' load_balancing exporter (k8s resolver) keeps an incremental
// set that each slice event edits; every gateway's guard must hold exactly
// the ring the agents route by, or it counts spans as not owned (and keeps
// them all). Steps the endpointslice controller produces: several slices
// with an address in two of them, the address leaving one (the exporter
// drops it although the other still lists it; a guard rebuilding from all
// slices would not), a second address family (IPv6, bracketed), an
// endpoint turning not ready. After each step, traffic through the agent:
// every span reaches a gateway (accepted), no guard counts one as not
// owned, and agent and guards agree on the number of gateways.
func TestGuardRingFollowsTheAgentsK8sResolver(t *testing.T) {
	c := ctx(t)
	slices := headlessServiceOfOwnSlices(t, conformance)

	// An IPv6 address of this namespace's loopback for the second family.
	const ipv6 = "fd00:10:244::4"
	out, err := exec.Command("ip", "-6", "addr", "replace", ipv6+"/128", "dev", "lo", "nodad").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("ip", "-6", "addr", "del", ipv6+"/128", "dev", "lo").Run() })

	// Slices first, so that every gateway's first ring already holds it.
	g := make([]*conformanceNode, 4)
	for i, ip := range []string{"10.244.200.1", "10.244.200.2", "10.244.200.3", ipv6} {
		g[i] = &conformanceNode{name: fmt.Sprint("gateway-", i+1), ip: ip}
	}
	_, err = slices.Create(c, conformanceSlice(conformance, "gw-a", discoveryv1.AddressTypeIPv4, conformanceEndpoint(true, g[0]), conformanceEndpoint(true, g[1])), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = slices.Create(c, conformanceSlice(conformance, "gw-b", discoveryv1.AddressTypeIPv4, conformanceEndpoint(true, g[1]), conformanceEndpoint(true, g[2])), metav1.CreateOptions{})
	require.NoError(t, err)
	for i := range g {
		g[i] = startConformanceNode(t, conformance, "gateway", g[i].name, g[i].ip)
	}
	agent := startConformanceNode(t, conformance, "agent", "agent", "10.244.200.100")

	steps := []struct {
		name   string
		apply  func() error
		routed []*conformanceNode // the gateways the agent's exporter lists afterwards
	}{
		{"two slices, one address in both", func() error { return nil }, g[:3]},
		{"the shared address leaves one slice", func() error {
			_, err := slices.Update(c, conformanceSlice(conformance, "gw-a", discoveryv1.AddressTypeIPv4, conformanceEndpoint(true, g[0])), metav1.UpdateOptions{})
			return err
		}, []*conformanceNode{g[0], g[2]}},
		{"an IPv6 slice", func() error {
			_, err := slices.Create(c, conformanceSlice(conformance, "gw-v6", discoveryv1.AddressTypeIPv6, conformanceEndpoint(true, g[3])), metav1.CreateOptions{})
			return err
		}, []*conformanceNode{g[0], g[2], g[3]}},
		{"an endpoint not ready", func() error {
			_, err := slices.Update(c, conformanceSlice(conformance, "gw-b", discoveryv1.AddressTypeIPv4, conformanceEndpoint(true, g[1]), conformanceEndpoint(false, g[2])), metav1.UpdateOptions{})
			return err
		}, []*conformanceNode{g[0], g[1], g[3]}},
	}
	for i, step := range steps {
		require.NoError(t, step.apply(), step.name)
		want := float64(len(step.routed))
		eventually(t, time.Minute, step.name+": the agent's exporter and every guard see the new set", func() (bool, string) {
			a := agent.scrape(t).Sum("otelcol_loadbalancer_num_backends", "resolver", "k8s")
			seen := fmt.Sprintf("agent %v", a)
			ok := a == want
			for _, n := range g {
				m := n.scrape(t).Sum(harness.MetricGuardRingMembers)
				seen += fmt.Sprintf(", %s %v", n.name, m)
				ok = ok && m == want
			}
			return ok, seen
		})
		notOwned := map[string]float64{}
		accepted := map[string]float64{}
		for _, n := range g {
			s := n.scrape(t)
			notOwned[n.name] = s.Sum(harness.MetricGuardSpansNotOwned)
			accepted[n.name] = s.Sum(harness.MetricReceiverAccepted)
		}
		gen := harness.DefaultGeneratorConfig()
		gen.Seed, gen.Traces, gen.Rate, gen.Agents = uint64(100+i), 300, 300, 1
		plans, err := harness.Plan(gen)
		require.NoError(t, err)
		sc, cancel := context.WithTimeout(c, time.Minute)
		sent, err := harness.Send(sc, plans, []string{agent.endpoint()}, nil)
		cancel()
		require.NoError(t, err)
		require.Zero(t, sent.SpansFailed)
		eventually(t, time.Minute, step.name+": every span reached a gateway the agent lists", func() (bool, string) {
			total, perGateway := 0.0, ""
			for _, n := range g {
				d := n.scrape(t).Sum(harness.MetricReceiverAccepted) - accepted[n.name]
				total += d
				perGateway += fmt.Sprintf(" %s:%v", n.name, d)
			}
			return total == float64(sent.SpansSent), fmt.Sprintf("accepted %v of %d:%s", total, sent.SpansSent, perGateway)
		})
		for _, n := range g {
			d := n.scrape(t).Sum(harness.MetricGuardSpansNotOwned) - notOwned[n.name]
			require.Zero(t, d, "%s: spans %s's guard counts as owned by another gateway, under the agent's routing", step.name, n.name)
		}
		for _, n := range g {
			routed := false
			for _, r := range step.routed {
				routed = routed || r == n
			}
			got := n.scrape(t).Sum(harness.MetricReceiverAccepted) - accepted[n.name]
			require.Equal(t, routed, got > 0, "%s: %s (%s) received %v spans", step.name, n.name, n.endpoint(), got)
		}
	}
}

// TestTierAgreesAtTwoHundredGateways: a tier of 200 gateways, listed in
// three EndpointSlices as the endpointslice controller splits them (at
// most 100 endpoints each), followed by 20 agents and by the guards of the
// four gateways that run (the other 196 addresses are local and refuse
// connections: their spans fail in the agents' queues). Asserted: every
// agent's exporter and every guard lists 200, then 190 after one slice
// loses 20 endpoints and another gains 10; after each, traffic through the
// agents reaches the running gateways and no guard counts a span as owned
// elsewhere (the rings agree, not only their sizes). Reported: how long
// after the change every agent and guard agreed.
func TestTierAgreesAtTwoHundredGateways(t *testing.T) {
	const agents = 20
	svc := types.NamespacedName{Namespace: "ring-scale", Name: "gw200"}
	slices := headlessServiceOfOwnSlices(t, svc)

	running := make([]*conformanceNode, 4)
	var eps []discoveryv1.Endpoint
	for i := range running {
		running[i] = &conformanceNode{name: fmt.Sprint("gateway-", i+1), ip: fmt.Sprintf("10.244.201.%d", i+1)}
		eps = append(eps, conformanceEndpoint(true, running[i]))
	}
	absent := func(i int) discoveryv1.Endpoint {
		return conformanceEndpoint(true, &conformanceNode{ip: fmt.Sprintf("10.244.%d.%d", 202+i/200, i%200+1)})
	}
	for i := range 196 {
		eps = append(eps, absent(i))
	}
	sliceA, sliceB, sliceC := eps[:100], eps[100:160], eps[160:]
	for name, part := range map[string][]discoveryv1.Endpoint{"gw200-a": sliceA, "gw200-b": sliceB, "gw200-c": sliceC} {
		_, err := slices.Create(ctx(t), conformanceSlice(svc, name, discoveryv1.AddressTypeIPv4, part...), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for i := range running {
		running[i] = startConformanceNode(t, svc, "gateway", running[i].name, running[i].ip)
	}
	var agentNodes []*conformanceNode
	for i := range agents {
		agentNodes = append(agentNodes, startConformanceNode(t, svc, "agent", fmt.Sprint("agent-", i+1), fmt.Sprintf("10.244.201.%d", 101+i)))
	}

	// agreeOn waits until every agent and guard lists want gateways and
	// returns how long that took.
	agreeOn := func(what string, want float64) time.Duration {
		start := time.Now()
		eventually(t, 2*time.Minute, what+": every agent's exporter and every guard lists the set", func() (bool, string) {
			var behind []string
			for _, a := range agentNodes {
				if v := a.scrape(t).Sum("otelcol_loadbalancer_num_backends", "resolver", "k8s"); v != want {
					behind = append(behind, fmt.Sprintf("%s %v", a.name, v))
				}
			}
			for _, g := range running {
				if v := g.scrape(t).Sum(harness.MetricGuardRingMembers); v != want {
					behind = append(behind, fmt.Sprintf("%s %v", g.name, v))
				}
			}
			return len(behind) == 0, fmt.Sprint("behind: ", behind)
		})
		return time.Since(start)
	}
	// ringsAgree sends traffic through three agents: every span that
	// reaches a running gateway is one its guard computes as its own.
	ringsAgree := func(what string, seed uint64) {
		before := map[string][2]float64{}
		for _, g := range running {
			s := g.scrape(t)
			before[g.name] = [2]float64{s.Sum(harness.MetricReceiverAccepted), s.Sum(harness.MetricGuardSpansNotOwned)}
		}
		gen := harness.DefaultGeneratorConfig()
		gen.Seed, gen.Traces, gen.Rate, gen.Agents = seed, 3000, 1000, 3
		plans, err := harness.Plan(gen)
		require.NoError(t, err)
		sc, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sent, err := harness.Send(sc, plans, []string{agentNodes[0].endpoint(), agentNodes[7].endpoint(), agentNodes[19].endpoint()}, nil)
		require.NoError(t, err)
		require.Zero(t, sent.SpansFailed)
		// About 4/200 of the traces belong to the running gateways.
		eventually(t, time.Minute, what+": spans reach the running gateways", func() (bool, string) {
			total := 0.0
			for _, g := range running {
				total += g.scrape(t).Sum(harness.MetricReceiverAccepted) - before[g.name][0]
			}
			return total > 0, fmt.Sprint(total, " accepted")
		})
		time.Sleep(2 * time.Second) // the rest of the batches in flight
		for _, g := range running {
			notOwned := g.scrape(t).Sum(harness.MetricGuardSpansNotOwned) - before[g.name][1]
			require.Zero(t, notOwned, "%s: %s's guard counts spans the agents sent it as owned by another gateway", what, g.name)
		}
	}

	agreeOn("200 gateways in 3 slices", 200)
	ringsAgree("200 gateways", 1)

	// One change: slice b loses 20 endpoints, slice c gains 10.
	var added []discoveryv1.Endpoint
	for i := range 10 {
		added = append(added, absent(196+i))
	}
	_, err := slices.Update(ctx(t), conformanceSlice(svc, "gw200-b", discoveryv1.AddressTypeIPv4, sliceB[:40]...), metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = slices.Update(ctx(t), conformanceSlice(svc, "gw200-c", discoveryv1.AddressTypeIPv4, append(append([]discoveryv1.Endpoint(nil), sliceC...), added...)...), metav1.UpdateOptions{})
	require.NoError(t, err)
	took := agreeOn("190 gateways", 190)
	t.Logf("REPORT ring at scale: %d agents and %d guards over 3 EndpointSlices of 200 endpoints agreed on a change to 190 within %.1f s (polled every 0.25 s, %d scrapes a round)", agents, len(running), took.Seconds(), agents+len(running))
	ringsAgree("190 gateways", 2)
}
