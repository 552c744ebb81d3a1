package cluster

// A pod's life: start its process, watch its readiness, and on deletion
// preStop, SIGTERM, the grace period and the final removal.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// startPod runs a pod: tailgate pods as processes, others as placeholders.
func (k *Kubelet) startPod(pod *corev1.Pod) {
	run := &podRun{ip: k.allocateIP(), stop: make(chan struct{}), done: make(chan struct{})}
	k.mu.Lock()
	k.pods[pod.UID] = run
	k.mu.Unlock()
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer close(run.done)
		if err := k.runPod(pod, run); err != nil {
			fmt.Fprintf(os.Stderr, "kubelet: pod %s/%s: %v\n", pod.Namespace, pod.Name, err)
			k.setStatus(pod, run, corev1.PodFailed, false, err.Error())
		}
	}()
}

func (k *Kubelet) runPod(pod *corev1.Pod, run *podRun) error {
	var img containerImage
	runs := false
	if len(pod.Spec.Containers) == 1 {
		var err error
		if img, runs, err = k.imageFor(pod.Spec.Containers[0].Image); err != nil {
			return err
		}
	}
	if !runs {
		// An application pod: it has an address and is ready; nothing runs.
		k.setStatus(pod, run, corev1.PodRunning, true, "")
		<-run.stop
		return nil
	}
	c := pod.Spec.Containers[0]
	root, err := k.prepareRoot(pod, run, img.rootfs)
	if err != nil {
		return err
	}
	defer k.unmount(run)
	env, err := k.containerEnv(pod, c, run)
	if err != nil {
		return err
	}
	loopback, err := loopbackArgs()
	if err != nil {
		return err
	}
	uid, gid := int64(0), int64(0)
	var groups []uint32
	if sc := pod.Spec.SecurityContext; sc != nil {
		uid, gid = deref(sc.RunAsUser), deref(sc.RunAsGroup)
		// The pod's fsGroup is a supplementary group of its containers,
		// which is what makes 0440 volume files theirs to read.
		if sc.FSGroup != nil {
			groups = append(groups, uint32(*sc.FSGroup))
		}
	}
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	cmd := img.entry
	if len(c.Command) > 0 {
		cmd = c.Command
	}
	proc, err := harness.StartProcess(cmd[0], harness.ProcessSpec{
		Name: pod.Namespace + "_" + pod.Name, Args: slices.Concat(cmd[1:], c.Args, loopback), Env: env, LogDir: filepath.Join(k.dir, "logs"),
		Root: root, RunAs: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
	})
	if err != nil {
		return err
	}
	run.proc = proc
	k.setStatus(pod, run, corev1.PodRunning, false, "")

	ready := false
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-run.stop:
			return nil
		case <-tick.C:
		}
		if proc.Exited() {
			return fmt.Errorf("container exited:\n%s", proc.LogTail(20))
		}
		if now := probe(c.ReadinessProbe, c, run.ip); now != ready {
			ready = now
			k.setStatus(pod, run, corev1.PodRunning, ready, "")
		}
	}
}

// stopPod handles a graceful deletion once: preStop, SIGTERM, then SIGKILL
// when the grace period runs out, then removes the pod object.
func (k *Kubelet) stopPod(pod *corev1.Pod, run *podRun) {
	k.mu.Lock()
	if run.stopping {
		k.mu.Unlock()
		return
	}
	run.stopping = true
	k.mu.Unlock()
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		start := time.Now()
		if run.proc != nil {
			if c := pod.Spec.Containers[0]; c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				time.Sleep(min(grace, time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second))
			}
			_ = run.proc.Stop(max(grace-time.Since(start), 2*time.Second))
		}
		run.halt()
		<-run.done
		k.finalize(pod)
		k.mu.Lock()
		delete(k.pods, pod.UID)
		k.mu.Unlock()
	}()
}

// finalize deletes the pod object for good, as the kubelet does once the
// containers are gone.
func (k *Kubelet) finalize(pod *corev1.Pod) {
	zero := int64(0)
	_ = k.cp.Client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
}
