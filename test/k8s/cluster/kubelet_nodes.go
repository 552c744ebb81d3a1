package cluster

// Scheduling and addresses: the Node objects this kubelet registers, where
// a pending pod goes, and the pod and node IPs (10.244.x.y on the sandbox's
// loopback).

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// NodeIP is the InternalIP of the i-th node.
func NodeIP(i int) string { return fmt.Sprintf("10.244.255.%d", i+1) }

func (k *Kubelet) registerNode(ctx context.Context, name, ip string) error {
	c := k.cp.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": "zone-" + name,
		}},
	}
	if _, err := c.Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// Admission taints new nodes not-ready; no node lifecycle controller
	// runs to lift it, so do what a registering kubelet's readiness would.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = nil
		if n, err = c.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
		capacity := corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods: resource.MustParse("110"),
		}
		n.Status.Capacity, n.Status.Allocatable = capacity, capacity
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
		n.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
		_, err = c.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// bind places a pod: a DaemonSet pod on the node its affinity names, any
// other round-robin over the nodes.
func (k *Kubelet) bind(ctx context.Context, pod *corev1.Pod) error {
	node := ""
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) > 0 {
					node = f.Values[0]
				}
			}
		}
	}
	if node == "" {
		k.mu.Lock()
		node = k.Nodes[k.rr%len(k.Nodes)]
		k.rr++
		k.mu.Unlock()
	}
	return k.cp.Client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
}

func (k *Kubelet) allocateIP() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	ip := fmt.Sprintf("10.244.%d.%d", k.nextIP/250, k.nextIP%250+1)
	k.nextIP++
	return ip
}

func (k *Kubelet) nodeIP(node string) string {
	for i, n := range k.Nodes {
		if n == node {
			return NodeIP(i)
		}
	}
	return ""
}
