package live

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
	"github.com/tailgate-dev/tailgate/test/harness"
)

// podFromGatewayTemplate is a pod of the base's gateway Deployment's
// template, placed on node, under labels of its own so that no Service or
// agent ring picks it up.
func podFromGatewayTemplate(t *testing.T, name, node string) *corev1.Pod {
	t.Helper()
	d, err := env.cp.Client.AppsV1().Deployments(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
	require.NoError(t, err)
	spec := *d.Spec.Template.Spec.DeepCopy()
	spec.NodeName = node
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/name": "node-test"}},
		Spec:       spec,
	}
}

// TestGatewayImageRunsOnANode: the gateway's pod, as the base
// describes it, runs on a real node: containerd starts the image with
// runc, as the image's user and with its read-only root filesystem; the
// kubelet's readiness probe makes it Ready through the pod network; on
// deletion the kubelet's termination ends the container.
func TestGatewayImageRunsOnANode(t *testing.T) {
	node := env.nodes.Nodes[0]
	pods := env.cp.Client.CoreV1().Pods(namespace)
	created := time.Now()
	pod, err := pods.Create(ctx(t), podFromGatewayTemplate(t, "gateway-on-a-node", node.Name), metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Delete(ctx(t), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}) })

	eventually(t, 3*time.Minute, "the gateway Ready on "+node.Name, func() (bool, string) {
		p, err := pods.Get(ctx(t), pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return podReady(*p), fmt.Sprintf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	})
	t.Logf("REPORT node: a gateway pod Ready %s after its creation (sandbox, CNI, container, startup probe)", time.Since(created).Round(100*time.Millisecond))
	require.True(t, node.HoldsPodIP(pod.Status.PodIP), "pod IP %s is not from %s's pod CIDR %s", pod.Status.PodIP, node.Name, node.PodCIDR)
	status := pod.Status.ContainerStatuses[0]
	require.Equal(t, imageRef, status.Image, "the container runs the image the base names")
	require.Zero(t, status.RestartCount)

	// The container's process, as the host sees it, from the pod's cgroup.
	pids, err := node.ContainerPIDs(pod, status.ContainerID)
	require.NoError(t, err)
	require.NotEmpty(t, pids)
	requireImageUser(t, pids[0])
	require.True(t, rootReadOnly(t, pids[0]), "the container's root filesystem is read-only")

	// The pod network: the test reaches the pod's health port through the
	// node's route, as Prometheus would.
	resp, err := http.Get("http://" + pod.Status.PodIP + ":13133/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The kubelet's termination: SIGTERM, the collector's drain, exit.
	require.NoError(t, pods.Delete(ctx(t), pod.Name, metav1.DeleteOptions{}))
	eventually(t, 2*time.Minute, "the pod gone", func() (bool, string) {
		_, err := pods.Get(ctx(t), pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	for _, pid := range pids {
		require.Error(t, syscall.Kill(pid, 0), "the container's process %d outlived its pod", pid)
	}
}

// requireImageUser: the process runs as the image's user (Dockerfile USER).
func requireImageUser(t *testing.T, pid int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	require.Regexp(t, `(?m)^Uid:\s+10001\s+10001\s+10001\s+10001$`, string(status), "the container runs as the image's user")
}

// rootReadOnly reports whether a process's root mount is read-only.
func rootReadOnly(t *testing.T, pid int) bool {
	mounts, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	require.NoError(t, err)
	for _, line := range strings.Split(string(mounts), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 5 && fields[4] == "/" {
			return strings.Split(fields[5], ",")[0] == "ro"
		}
	}
	t.Fatalf("no root mount in\n%s", mounts)
	return false
}

// failure is what failUnderTraffic measured: the interesting traces in
// flight at the failure, those of them the agents' ring gave the victims,
// how many broke (of them, how many the ring gave other gateways), and how
// long the tier took to be whole again.
type failure struct {
	inFlight, victimsOwn int
	broken, brokenOthers int
	whole                time.Duration // from the failure until the tier was whole again
}

// failUnderTraffic sends traffic (rate traces/s for the given time)
// through the agents and, 12s in, calls fail, which returns once the
// failure happened; from then it times until whole() holds (the tier whole
// again). In flight at the failure: the interesting traces with a span
// sent from a decision window before fail was called until the tier was
// whole. victims are the pod IPs of the gateways the failure takes: the
// agents' ring, as it was before the failure, tells which traces were
// theirs. It reports the outcome and returns it.
func failUnderTraffic(t *testing.T, what string, seed uint64, agents, victims []string, rate float64, traffic time.Duration, fail func(), whole func() bool) failure {
	t.Helper()
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = seed, len(agents), rate, int(rate*traffic.Seconds())
	gen.ErrorRatio, gen.SlowRatio = 0.2, 0.2
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	ring := readyEndpoints(t)
	for i, e := range ring {
		ring[i] = net.JoinHostPort(e, "4317")
	}
	owner := rebalanceguardprocessor.RingOwner(ring)
	victimOwns := func(id pcommon.TraceID) bool {
		host, _, _ := net.SplitHostPort(owner(id))
		return slices.Contains(victims, host)
	}
	env.sink.Reset()
	var f failure
	var failStart, failEnd time.Duration
	recovered := make(chan struct{})
	begin := time.Now()
	sent := sendTo(t, agents, plans, map[time.Duration]func(){12 * time.Second: func() {
		failStart = time.Since(begin)
		fail()
		failEnd = time.Since(begin)
		go func() {
			defer close(recovered)
			start := time.Now()
			if ok, _ := harness.Poll(3*time.Minute, 250*time.Millisecond, func() (bool, string) { return whole(), "" }); ok {
				f.whole = time.Since(start)
			}
		}()
	}})
	<-recovered
	require.NotZero(t, f.whole, "%s: the tier not whole again within 3m", what)
	env.sink.WaitQuiet(context.Background(), decisionWait, 5*time.Second, 2*time.Minute, nil)
	var victimsTraces, othersTraces []harness.TracePlan
	for _, p := range plans {
		if p.Kind != harness.Normal && p.LastSendAt() >= failStart-decisionWait-time.Second && p.FirstSendAt() <= failEnd+f.whole {
			if victimOwns(p.ID) {
				victimsTraces = append(victimsTraces, p)
			} else {
				othersTraces = append(othersTraces, p)
			}
		}
	}
	ev := harness.Evaluate(slices.Concat(victimsTraces, othersTraces), sent, env.sink)
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("REPORT %s: %s traces in flight %d, complete %d, partial %d, lost %d", what, k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	f.broken, f.inFlight = brokenInteresting(ev)
	f.brokenOthers, _ = brokenInteresting(harness.Evaluate(othersTraces, sent, env.sink))
	f.victimsOwn = len(victimsTraces)
	all := harness.Evaluate(plans, sent, env.sink)
	broken, interesting := brokenInteresting(all)
	t.Logf("REPORT %s: of the %d in flight, the ring gave the victims %d (%.0f%%); broken: %d, of which %d the ring gave other gateways",
		what, f.inFlight, f.victimsOwn, 100*float64(f.victimsOwn)/float64(max(f.inFlight, 1)), f.broken, f.brokenOthers)
	t.Logf("REPORT %s: failed %s into the traffic (%s to fail); tier whole again %s after; error and slow traces broken, all of the run: %d of %d; duplicate spans %d",
		what, failStart.Round(100*time.Millisecond), (failEnd - failStart).Round(100*time.Millisecond), f.whole.Round(100*time.Millisecond), broken, interesting, all.Duplicates)
	require.Positive(t, f.inFlight, "no interesting trace in flight at the failure")
	return f
}

// requireVictimsShare: what broke is at most the victims' share of the
// traces in flight, by the agents' ring, and the traces the ring gave the
// other gateways stayed whole (but for a few at the edges of the window).
func requireVictimsShare(t *testing.T, f failure) {
	t.Helper()
	const edges = 3
	assert.LessOrEqual(t, f.broken, f.victimsOwn+edges,
		"more broken than the victims' share (%d) of the %d interesting traces in flight", f.victimsOwn, f.inFlight)
	assert.LessOrEqual(t, f.brokenOthers, edges, "traces the ring gave the surviving gateways broke")
}

// tierWhole: n gateways ready and in every agent's ring.
func tierWhole(n int) func() bool {
	return func() bool {
		return len(readyEndpointsQuiet()) == n && ringsHold(agentRingSizes("k8s"), n)
	}
}

// TestContainerKilledByTheRuntime: the runtime kills a gateway's container
// with SIGKILL under traffic (a crash); the kubelet restarts it in place
// (restartPolicy Always): same pod, same IP, a restart counted. What the
// victim held undecided is lost, nothing more.
func TestContainerKilledByTheRuntime(t *testing.T) {
	settleGateways(t, 3, "k8s")
	time.Sleep(decisionWait)
	victim := readyPods(t, "tailgate-gateway")[0]
	node := env.nodes.Node(victim.Spec.NodeName)
	pods := env.cp.Client.CoreV1().Pods(namespace)
	f := failUnderTraffic(t, "container killed", 601, agentEndpoints(t), []string{victim.Status.PodIP}, 30, 50*time.Second, func() {
		if err := node.KillContainer(victim.Status.ContainerStatuses[0].ContainerID); err != nil {
			t.Errorf("%v", err)
		}
	}, func() bool {
		// Whole again: the restarted container ready and in every ring.
		p, err := pods.Get(context.Background(), victim.Name, metav1.GetOptions{})
		return err == nil && p.Status.ContainerStatuses[0].RestartCount > 0 && podReady(*p) && tierWhole(3)()
	})
	p, err := pods.Get(ctx(t), victim.Name, metav1.GetOptions{})
	require.NoError(t, err)
	status := p.Status.ContainerStatuses[0]
	require.Equal(t, int32(1), status.RestartCount, "the kubelet restarted the killed container once")
	require.NotNil(t, status.LastTerminationState.Terminated)
	assert.Equal(t, int32(137), status.LastTerminationState.Terminated.ExitCode, "killed by SIGKILL")
	assert.Equal(t, victim.Status.PodIP, p.Status.PodIP, "restarted in its pod")
	requireVictimsShare(t, f)
}

// TestNodeLost: a node fails at once under traffic (its kubelet, runtime,
// network and containers gone, as in a power loss), with an agent and a
// gateway on it. The traffic enters through the other node's agent (the
// lost node's applications are gone with it). The API keeps the lost
// node's pods Running until the node lifecycle controller finds the node's
// heartbeats missing, marks them not ready (the agents drop its gateways)
// and evicts them; the Deployment replaces its gateways on the node left.
// What the lost gateways held undecided is lost, nothing more. Then a
// replacement node joins under the same name, for the tests after.
func TestNodeLost(t *testing.T) {
	settleGateways(t, 3, "k8s")
	time.Sleep(decisionWait)
	gateways := readyPods(t, "tailgate-gateway")
	lost := gateways[0].Spec.NodeName
	var onLost []string
	for _, g := range gateways {
		if g.Spec.NodeName == lost {
			onLost = append(onLost, g.Status.PodIP)
		}
	}
	var survivor []string
	var lostAgent corev1.Pod
	for _, a := range readyPods(t, "tailgate-agent") {
		if a.Spec.NodeName == lost {
			lostAgent = a
		} else {
			survivor = append(survivor, net.JoinHostPort(a.Status.PodIP, "4317"))
		}
	}
	require.Len(t, survivor, 1)
	t.Cleanup(func() {
		require.NoError(t, env.nodes.Replace(lost))
		eventually(t, 3*time.Minute, "the replacement node's agent ready", func() (bool, string) {
			return len(readyPods(t, "tailgate-agent")) == 2, ""
		})
		settleGateways(t, 3, "k8s")
	})

	var start time.Time
	var stillRunning bool
	f := failUnderTraffic(t, "node lost", 602, survivor, onLost, 30, 100*time.Second, func() {
		start = time.Now()
		env.nodes.Lose(lost)
		time.Sleep(5 * time.Second)
		p, err := env.cp.Client.CoreV1().Pods(namespace).Get(context.Background(), lostAgent.Name, metav1.GetOptions{})
		stillRunning = err == nil && p.Status.Phase == corev1.PodRunning && podReady(*p)
	}, func() bool {
		// Whole again: three ready gateways, none of them the lost node's,
		// in the surviving agent's ring.
		ready := readyEndpointsQuiet()
		for _, g := range gateways {
			if g.Spec.NodeName == lost && slices.Contains(ready, g.Status.PodIP) {
				return false
			}
		}
		s, err := harness.ScrapeMetricsAt(net.JoinHostPort(strings.Split(survivor[0], ":")[0], "8888"))
		return len(ready) == 3 && err == nil && s.Sum("otelcol_loadbalancer_num_backends", "resolver", "k8s") == 3
	})
	assert.True(t, stillRunning, "the lost node's pods stay Running and Ready in the API until the controller finds the node lost")
	node, err := env.cp.Client.CoreV1().Nodes().Get(ctx(t), lost, metav1.GetOptions{})
	require.NoError(t, err)
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			assert.NotEqual(t, corev1.ConditionTrue, c.Status, "the lost node is not Ready")
			t.Logf("REPORT node lost: node %s %s (%s) %s after the loss", lost, c.Status, c.Reason, c.LastTransitionTime.Sub(start).Round(time.Second))
		}
	}
	// Evicted: marked for deletion (the pod stays Terminating until a
	// kubelet confirms it, here the replacement node's).
	for _, g := range gateways {
		if g.Spec.NodeName == lost {
			p, err := env.cp.Client.CoreV1().Pods(namespace).Get(ctx(t), g.Name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err) || err == nil && p.DeletionTimestamp != nil, "the lost node's gateway %s evicted", g.Name)
		}
	}
	t.Logf("REPORT node lost: %d of 3 gateways and an agent on the lost node", len(onLost))
	requireVictimsShare(t, f)
}

// oomMemoryLimit is the memory limit of the gateway the OOM test starves:
// above what an idle gateway holds (about 25 MiB here). Steady load does
// not kill it: memory_limiter, sized from the limit, refuses data first (a
// 40 MiB gateway under 100 traces/s was refused, never killed). What
// kills it is memory memory_limiter never sees: requests being decoded,
// before the pipeline, as a burst of large batches brings.
const oomMemoryLimit = "64Mi"

// largeBatches sends, all at once, n OTLP requests of one span each with
// an attribute of size bytes (under the gateways' 4 MiB intake limit)
// straight to a gateway, as agents' largest batches after a backlog would.
// The replies do not matter: the gateway may die decoding them.
func largeBatches(addr string, n, size int) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	payload := strings.Repeat("x", size)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			td := ptrace.NewTraces()
			sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			sp.SetTraceID(pcommon.TraceID([16]byte{0xb1, 0x9b, byte(i), 1}))
			sp.SetSpanID(pcommon.SpanID([8]byte{0xb1, byte(i), 1}))
			sp.SetName("large")
			sp.Attributes().PutStr("payload", payload)
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = client.Export(c, ptraceotlp.NewExportRequestFromTraces(td))
		}()
	}
	wg.Wait()
}

func TestGatewayOOMKilled(t *testing.T) {
	settleGateways(t, 3, "k8s")
	d, err := env.cp.Client.AppsV1().Deployments(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
	require.NoError(t, err)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-low-memory", Namespace: namespace, Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	limit := resource.MustParse(oomMemoryLimit)
	res := &pod.Spec.Containers[0].Resources
	res.Requests[corev1.ResourceMemory], res.Limits[corev1.ResourceMemory] = limit, limit
	pods := env.cp.Client.CoreV1().Pods(namespace)
	_, err = pods.Create(ctx(t), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
		settleGateways(t, 3, "k8s")
	})
	eventually(t, 2*time.Minute, "four gateways in every ring", func() (bool, string) { return tierWhole(4)(), "" })
	time.Sleep(decisionWait)
	pod, err = pods.Get(ctx(t), pod.Name, metav1.GetOptions{})
	require.NoError(t, err)

	var killed *corev1.ContainerStateTerminated
	f := failUnderTraffic(t, "OOM-killed", 603, agentEndpoints(t), []string{pod.Status.PodIP}, 30, 60*time.Second, func() {
		// Under the load, bursts of large batches until the kernel kills it.
		p, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%v", err)
			return
		}
		addr := net.JoinHostPort(p.Status.PodIP, "4317")
		ok, last := harness.Poll(60*time.Second, 100*time.Millisecond, func() (bool, string) {
			largeBatches(addr, 16, 3<<20)
			p, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
			if err != nil || len(p.Status.ContainerStatuses) == 0 {
				return false, fmt.Sprint(err)
			}
			killed = p.Status.ContainerStatuses[0].LastTerminationState.Terminated
			return killed != nil, fmt.Sprintf("%+v", p.Status.ContainerStatuses[0])
		})
		if !ok {
			t.Errorf("the low-memory gateway was not killed under load: %s", last)
		}
	}, func() bool {
		p, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && podReady(*p) && tierWhole(4)()
	})
	require.NotNil(t, killed, "the low-memory gateway was not killed under load")
	assert.Equal(t, "OOMKilled", killed.Reason, "killed by the OOM killer")
	requireVictimsShare(t, f)
}
