package cluster

// Pod status as the API server sees it: phase, IPs, conditions and
// container statuses.

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

func (k *Kubelet) setStatus(pod *corev1.Pod, run *podRun, phase corev1.PodPhase, ready bool, msg string) {
	ctx := context.Background()
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := k.cp.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.UID != pod.UID {
			return nil // gone
		}
		cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
			s := corev1.ConditionFalse
			if ok {
				s = corev1.ConditionTrue
			}
			return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.Now()}
		}
		now := metav1.Now()
		p.Status.Phase, p.Status.Message = phase, msg
		p.Status.PodIP, p.Status.PodIPs = run.ip, []corev1.PodIP{{IP: run.ip}}
		p.Status.HostIP = k.nodeIP(p.Spec.NodeName)
		p.Status.HostIPs = []corev1.HostIP{{IP: p.Status.HostIP}}
		if p.Status.StartTime == nil {
			p.Status.StartTime = &now
		}
		p.Status.Conditions = []corev1.PodCondition{
			cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
			cond(corev1.ContainersReady, ready), cond(corev1.PodReady, ready),
		}
		var statuses []corev1.ContainerStatus
		for _, c := range p.Spec.Containers {
			st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: ready, Started: ptr(phase == corev1.PodRunning)}
			if phase == corev1.PodRunning {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: *p.Status.StartTime}
			} else {
				st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Message: msg}
			}
			statuses = append(statuses, st)
		}
		p.Status.ContainerStatuses = statuses
		_, err = k.cp.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}
