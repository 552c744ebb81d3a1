package live

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
)

// realNodeCount: two, so that a DaemonSet runs two agents and pods talk
// across nodes.
const realNodeCount = 2

// realNodes starts the real nodes once for the run (cluster.StartNodes)
// and returns them.
func realNodes(t *testing.T) *cluster.Fabric {
	t.Helper()
	env.real.once.Do(func() {
		start := time.Now()
		env.real.fabric, env.real.err = cluster.StartNodes(env.cp, filepath.Join(env.dir, "real-nodes"), realNodeCount, env.image)
		t.Logf("%d real nodes Ready in %s", realNodeCount, time.Since(start).Round(time.Second))
	})
	require.NoError(t, env.real.err)
	return env.real.fabric
}

// onRealNode is a pod of the base's gateway Deployment's template, placed
// on a real node, under labels of its own so that no Service or agent ring
// picks it up.
func onRealNode(t *testing.T, name, node string) *corev1.Pod {
	t.Helper()
	d, err := env.cp.Client.AppsV1().Deployments(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
	require.NoError(t, err)
	spec := *d.Spec.Template.Spec.DeepCopy()
	spec.NodeName = node
	spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: cluster.RealNodeTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/name": "real-node-test"}},
		Spec:       spec,
	}
}

// TestGatewayImageRunsOnARealNode: the gateway's pod, as the base
// describes it, runs on a real node: containerd starts the image with
// runc, as the image's user and with its read-only root filesystem; the
// kubelet's readiness probe makes it Ready through the pod network; on
// deletion the kubelet's termination ends the container.
func TestGatewayImageRunsOnARealNode(t *testing.T) {
	fabric := realNodes(t)
	node := fabric.Nodes[0]
	pods := env.cp.Client.CoreV1().Pods(namespace)
	pod, err := pods.Create(ctx(t), onRealNode(t, "gateway-on-real-node", node.Name), metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Delete(ctx(t), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr[int64](0)}) })

	eventually(t, 3*time.Minute, "the gateway Ready on "+node.Name, func() (bool, string) {
		p, err := pods.Get(ctx(t), pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return podReady(*p), fmt.Sprintf("phase %s, statuses %+v\n%s", p.Status.Phase, p.Status.ContainerStatuses, node.LogTails(20))
	})
	require.True(t, node.HoldsPodIP(pod.Status.PodIP), "pod IP %s is not from %s's pod CIDR %s", pod.Status.PodIP, node.Name, node.PodCIDR)
	status := pod.Status.ContainerStatuses[0]
	require.Equal(t, imageRef, status.Image, "the container runs the image the base names")
	require.Zero(t, status.RestartCount)

	// The container's process, as the host sees it, from the pod's cgroup.
	pids, err := node.ContainerPIDs(pod, status.ContainerID)
	require.NoError(t, err)
	require.NotEmpty(t, pids)
	procStatus, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	require.NoError(t, err)
	require.Regexp(t, `(?m)^Uid:\s+10001\s+10001\s+10001\s+10001$`, string(procStatus), "the container runs as the image's user")
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
