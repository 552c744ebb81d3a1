package live

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
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
		require.NotEmpty(t, p.Status.ContainerStatuses, "agent pod %s", p.Name)
		pids, err := env.nodes.Node(p.Spec.NodeName).ContainerPIDs(&p, p.Status.ContainerStatuses[0].ContainerID)
		require.NoError(t, err, "agent pod %s runs no process", p.Name)
		requireImageUser(t, pids[0])
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
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: imageRef}}},
	}
	_, err := env.cp.Client.CoreV1().Pods(namespace).Create(ctx(t), bad, metav1.CreateOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "violates PodSecurity \"restricted")
}

// TestRBACGrantsExactlyWhatThePodsUse: the agents and gateways, running the
// shipped profiles through the base's ServiceAccounts, made only requests
// their RBAC allows (none refused), and used every resource it grants: the
// RBAC in deploy/ is what the pinned components' informers really need,
// read from the API server's audit log, nothing more. Verbs: informers of
// client-go v0.37 stream their initial list over a watch against this API
// server, so only watch shows; list stays granted for API servers that do
// not stream lists (client-go falls back to LIST there).
//
// Only the pods running now are judged, by the pod their bound token names:
// pods of an earlier install (the Helm test deletes the base and later the
// release, RBAC included, while their pods still shut down) are refused
// on their way out, which says nothing about this RBAC.
func TestRBACGrantsExactlyWhatThePodsUse(t *testing.T) {
	agentsSeeGateways(t, 3, "k8s") // both tiers up and following the EndpointSlices
	c := env.cp.Client
	agentRole, err := c.RbacV1().ClusterRoles().Get(ctx(t), "tailgate-agent", metav1.GetOptions{})
	require.NoError(t, err)
	gatewayRole, err := c.RbacV1().Roles(namespace).Get(ctx(t), "tailgate-gateway", metav1.GetOptions{})
	require.NoError(t, err)
	for sa, granted := range map[string][]rbacv1.PolicyRule{"tailgate-agent": agentRole.Rules, "tailgate-gateway": gatewayRole.Rules} {
		t.Run(sa, func(t *testing.T) {
			running := map[string]bool{}
			for _, p := range readyPods(t, sa) { // the workloads are named as their ServiceAccounts
				running[string(p.UID)] = true
			}
			require.NotEmpty(t, running)
			resources, verbs := map[string]bool{}, map[string]bool{}
			for _, r := range granted {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						resources[g+"/"+res] = true
						for _, v := range r.Verbs {
							verbs[g+"/"+res+":"+v] = true
						}
					}
				}
			}
			user := "system:serviceaccount:" + namespace + ":" + sa
			var requests []cluster.Request
			eventually(t, time.Minute, user+" used every resource it is granted", func() (bool, string) {
				all, err := env.cp.Requests(user)
				if err != nil {
					return false, err.Error()
				}
				requests = slices.DeleteFunc(all, func(r cluster.Request) bool { return !running[r.PodUID] })
				used := map[string]bool{}
				for _, r := range requests {
					used[r.APIGroup+"/"+r.Resource] = true
				}
				return maps.Equal(resources, used), fmt.Sprintf("granted %v, used %v", slices.Sorted(maps.Keys(resources)), slices.Sorted(maps.Keys(used)))
			})
			for _, r := range requests {
				assert.NotEqual(t, http.StatusForbidden, r.Code, "%s was refused %s %s/%s: its RBAC lacks a permission the profile needs", user, r.Verb, r.APIGroup, r.Resource)
				assert.True(t, verbs[r.APIGroup+"/"+r.Resource+":"+r.Verb], "%s made a request its RBAC does not grant: %s %s/%s", user, r.Verb, r.APIGroup, r.Resource)
			}
		})
	}
}
