package live

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"time"
)

// TestControllersReconcileTheBase: what the API server and the controllers
// made of the applied base: the gateway ReplicaSet and its 3 pods, one agent
// per node, the HPA's target resolved, the PDB's status computed, and the
// headless Service's EndpointSlice listing the ready gateways.
func TestControllersReconcileTheBase(t *testing.T) {
	c := env.cp.Client
	eventually(t, 2*time.Minute, "gateway Deployment available with 3 ready pods", func() (bool, string) {
		d, err := c.AppsV1().Deployments(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Status.ReadyReplicas == 3 && d.Status.UpdatedReplicas == 3, fmt.Sprintf("%+v", d.Status)
	})
	rss, err := c.AppsV1().ReplicaSets(namespace).List(ctx(t), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tailgate-gateway"})
	require.NoError(t, err)
	active := 0
	for _, rs := range rss.Items {
		assert.Equal(t, "Deployment", rs.OwnerReferences[0].Kind)
		if rs.Spec.Replicas != nil && *rs.Spec.Replicas > 0 {
			active++ // earlier rollouts (other tests) leave scaled-down ReplicaSets
		}
	}
	assert.Equal(t, 1, active, "one active ReplicaSet")

	eventually(t, time.Minute, "one ready agent per node", func() (bool, string) {
		ds, err := c.AppsV1().DaemonSets(namespace).Get(ctx(t), "tailgate-agent", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ds.Status.DesiredNumberScheduled == 2 && ds.Status.NumberReady == 2, fmt.Sprintf("%+v", ds.Status)
	})
	agents := pods(t, "app.kubernetes.io/name=tailgate-agent")
	nodes := map[string]bool{}
	for _, p := range agents {
		nodes[p.Spec.NodeName] = true
		assert.Equal(t, corev1.PodRunning, p.Status.Phase)
		// Its process really runs, from the image, as the image's user.
		proc := env.kubelet.PodProcess(p.UID)
		require.NotNil(t, proc, "agent pod %s runs no process", p.Name)
	}
	assert.Len(t, nodes, 2, "agents on distinct nodes")

	eventually(t, time.Minute, "HPA resolved its scale target", func() (bool, string) {
		h, err := c.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range h.Status.Conditions {
			if cond.Type == autoscalingv2.AbleToScale && cond.Status == corev1.ConditionTrue {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", h.Status.Conditions)
	})

	eventually(t, time.Minute, "PDB status computed", func() (bool, string) {
		p, err := c.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.ExpectedPods == 3 && p.Status.CurrentHealthy == 3 && p.Status.DesiredHealthy == 2 && p.Status.DisruptionsAllowed == 1, fmt.Sprintf("%+v", p.Status)
	})

	eventually(t, time.Minute, "headless Service's EndpointSlices list 3 ready gateways", func() (bool, string) {
		n := readyEndpoints(t)
		return len(n) == 3, fmt.Sprint(n)
	})
}

// TestRestrictedPodSecurityIsEnforced: the namespace really enforces the
// Restricted standard (so the tailgate pods above passed it): a pod that
// breaks it is refused.
func TestRestrictedPodSecurityIsEnforced(t *testing.T) {
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: namespace},
		// No securityContext at all: may escalate privileges, keeps every
		// capability, may run as root, no seccomp profile.
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: image}}},
	}
	_, err := env.cp.Client.CoreV1().Pods(namespace).Create(ctx(t), bad, metav1.CreateOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "violates PodSecurity \"restricted")
}

func pods(t *testing.T, selector string) []corev1.Pod {
	t.Helper()
	list, err := env.cp.Client.CoreV1().Pods(namespace).List(ctx(t), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	return list.Items
}

// readyEndpoints lists the ready addresses of the gateways' headless Service.
func readyEndpoints(t *testing.T) []string {
	t.Helper()
	out, err := gatewayEndpoints(ctx(t))
	require.NoError(t, err)
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
