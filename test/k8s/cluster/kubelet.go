package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// Kubelet plays the kubelet (and the scheduler) for a test cluster that has
// no container runtime. It binds pending pods to its nodes, runs every pod
// of the tailgate image as the real binary from the image's own filesystem
// (an overlay over the exported rootfs, with the pod's volumes, service
// account token, /proc and /sys mounted, as its user), reports pod status
// from the pod's real readiness probe, and on deletion honours preStop and
// the grace period. Pods of other images get an IP and run nothing: they
// stand for applications.
//
// It needs root and its own mount namespace (the test binary runs under
// `unshare --net --mount`), and pod IPs in 10.244.0.0/16 routed to lo.
//
// One difference from a real node: all pods share the test's network
// namespace, so two pods cannot both bind 127.0.0.1 on one port. The
// profiles keep pprof and zPages on 127.0.0.1 (never on the pod IP), so the
// kubelet hands each pod distinct ports for those two through
// TAILGATE_PPROF_PORT and TAILGATE_ZPAGES_PORT, where a real pod's own
// loopback would make that unnecessary.
type Kubelet struct {
	cp     *ControlPlane
	rootfs string   // exported image filesystem
	image  string   // image reference whose pods run tailgate
	entry  []string // the image's entrypoint
	dir    string
	Nodes  []string

	mu     sync.Mutex
	pods   map[types.UID]*podRun
	nextIP int
	rr     int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type podRun struct {
	ip       string
	proc     *harness.Process
	mounts   []string
	stop     chan struct{} // closed to end the pod's run loop
	done     chan struct{} // closed when the run loop has ended
	halted   sync.Once
	stopping bool // a graceful stop is under way (guarded by Kubelet.mu)
}

func (r *podRun) halt() { r.halted.Do(func() { close(r.stop) }) }

// NodeIP is the InternalIP of the i-th node.
func NodeIP(i int) string { return fmt.Sprintf("10.244.255.%d", i+1) }

// StartKubelet registers nodes and starts reconciling pods.
func StartKubelet(cp *ControlPlane, rootfs, image string, entrypoint []string, dir string, nodes int) (*Kubelet, error) {
	k := &Kubelet{cp: cp, rootfs: rootfs, image: image, entry: entrypoint, dir: dir, pods: map[types.UID]*podRun{}, nextIP: 10}
	ctx := context.Background()
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i+1)
		if err := k.registerNode(ctx, name, NodeIP(i)); err != nil {
			return nil, err
		}
		k.Nodes = append(k.Nodes, name)
	}
	ctx, k.cancel = context.WithCancel(ctx)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for ctx.Err() == nil {
			if err := k.sync(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "kubelet:", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return k, nil
}

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

// sync binds pending pods, starts new ones and stops deleted ones.
func (k *Kubelet) sync(ctx context.Context) error {
	list, err := k.cp.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	seen := map[types.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		seen[pod.UID] = true
		k.mu.Lock()
		run := k.pods[pod.UID]
		k.mu.Unlock()
		switch {
		case pod.DeletionTimestamp != nil:
			if run != nil {
				k.stopPod(pod, run)
			} else if pod.Spec.NodeName != "" {
				k.finalize(pod)
			}
		case pod.Spec.NodeName == "":
			if err := k.bind(ctx, pod); err != nil {
				fmt.Fprintf(os.Stderr, "kubelet: bind %s/%s: %v\n", pod.Namespace, pod.Name, err)
			}
		case run == nil && pod.Status.Phase == "" || run == nil && pod.Status.Phase == corev1.PodPending:
			k.startPod(pod.DeepCopy())
		}
	}
	// Pods removed without a graceful deletion (force delete).
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, run := range k.pods {
		if !seen[uid] {
			if run.proc != nil {
				go run.proc.Kill()
			}
			run.halt()
			delete(k.pods, uid)
		}
	}
	return nil
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
	if len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Image != k.image {
		// An application pod: it has an address and is ready; nothing runs.
		k.setStatus(pod, run, corev1.PodRunning, true, "")
		<-run.stop
		return nil
	}
	c := pod.Spec.Containers[0]
	root, err := k.prepareRoot(pod, run)
	if err != nil {
		return err
	}
	defer k.unmount(run)
	env, err := k.containerEnv(pod, c, run)
	if err != nil {
		return err
	}
	uid, gid := int64(0), int64(0)
	if sc := pod.Spec.SecurityContext; sc != nil {
		uid, gid = deref(sc.RunAsUser), deref(sc.RunAsGroup)
	}
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	cmd := k.entry
	if len(c.Command) > 0 {
		cmd = c.Command
	}
	args := append([]string{fmt.Sprintf("--userspec=%d:%d", uid, gid), root}, cmd...)
	args = append(args, c.Args...)
	proc, err := harness.StartProcess("/usr/sbin/chroot", harness.ProcessSpec{
		Name: pod.Namespace + "_" + pod.Name, Args: args, Env: env, LogDir: filepath.Join(k.dir, "logs"),
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

// probe runs an HTTP readiness probe against the pod IP.
func probe(p *corev1.Probe, c corev1.Container, ip string) bool {
	if p == nil || p.HTTPGet == nil {
		return true
	}
	port := p.HTTPGet.Port.IntValue()
	if p.HTTPGet.Port.Type == intstr.String {
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.StrVal {
				port = int(cp.ContainerPort)
			}
		}
	}
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:%d%s", ip, port, p.HTTPGet.Path))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// prepareRoot builds the container's root: an overlay over the image's
// filesystem with the pod's volumes, service account token, /proc and /sys.
func (k *Kubelet) prepareRoot(pod *corev1.Pod, run *podRun) (string, error) {
	ctx := context.Background()
	base := filepath.Join(k.dir, "pods", string(pod.UID))
	upper, work, root, vols := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "root"), filepath.Join(base, "volumes")
	for _, d := range []string{upper, work, root, vols} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := syscall.Mount("overlay", root, "overlay", 0, "lowerdir="+k.rootfs+",upperdir="+upper+",workdir="+work); err != nil {
		return "", fmt.Errorf("overlay: %w", err)
	}
	run.mounts = append(run.mounts, root)

	var fsGroup int64 = -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		fsGroup = *sc.FSGroup
	}
	sources := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(vols, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		switch {
		case v.ConfigMap != nil:
			cm, err := k.cp.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			for key, val := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, key), []byte(val), 0o644); err != nil {
					return "", err
				}
			}
		case v.EmptyDir != nil:
			if fsGroup >= 0 {
				if err := os.Chown(dir, -1, int(fsGroup)); err != nil {
					return "", err
				}
				if err := os.Chmod(dir, 0o2775); err != nil {
					return "", err
				}
			}
		case v.Projected != nil && projectsToken(v.Projected):
			// The ServiceAccount admission plugin's kube-api-access volume.
			if _, err := k.serviceAccountFiles(pod, dir); err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("volume %s: only configMap, emptyDir and the service account projection are supported", v.Name)
		}
		sources[v.Name] = dir
	}
	c := pod.Spec.Containers[0]
	type bind struct {
		src, target string
		ro          bool
	}
	var binds []bind
	for _, m := range c.VolumeMounts {
		binds = append(binds, bind{sources[m.Name], m.MountPath, m.ReadOnly})
	}
	for _, b := range binds {
		target := filepath.Join(root, b.target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return "", err
		}
		if err := syscall.Mount(b.src, target, "", syscall.MS_BIND, ""); err != nil {
			return "", fmt.Errorf("bind %s: %w", b.target, err)
		}
		run.mounts = append(run.mounts, target)
		if b.ro {
			if err := syscall.Mount("", target, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
				return "", err
			}
		}
	}
	points, err := harness.MountKernelFilesystems(root)
	run.mounts = append(run.mounts, points...)
	if err != nil {
		return "", err
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		if err := syscall.Mount("overlay", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return "", fmt.Errorf("read-only root: %w", err)
		}
	}
	return root, nil
}

func projectsToken(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

// serviceAccountFiles writes what the kubelet projects for a service
// account: a bound token from the TokenRequest API, the cluster CA and the
// namespace.
func (k *Kubelet) serviceAccountFiles(pod *corev1.Pod, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	expiry := int64(3600)
	tr, err := k.cp.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", pod.Spec.ServiceAccountName, err)
	}
	ca, err := os.ReadFile(k.cp.PKI.CACert)
	if err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(pod.Namespace)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// containerEnv resolves the container's env as the kubelet would, plus the
// variables every container gets.
func (k *Kubelet) containerEnv(pod *corev1.Pod, c corev1.Container, run *podRun) (map[string]string, error) {
	debug, err := harness.FreePorts(2)
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"TAILGATE_PPROF_PORT":     strconv.Itoa(debug[0]),
		"TAILGATE_ZPAGES_PORT":    strconv.Itoa(debug[1]),
		"HOSTNAME":                pod.Name,
		"KUBERNETES_SERVICE_HOST": "127.0.0.1",
		"KUBERNETES_SERVICE_PORT": strconv.Itoa(k.cp.APIPort),
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				env[e.Name] = run.ip
			case "spec.nodeName":
				env[e.Name] = pod.Spec.NodeName
			case "metadata.name":
				env[e.Name] = pod.Name
			case "metadata.namespace":
				env[e.Name] = pod.Namespace
			case "status.hostIP":
				env[e.Name] = k.nodeIP(pod.Spec.NodeName)
			default:
				return nil, fmt.Errorf("env %s: unsupported fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	return env, nil
}

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

func (k *Kubelet) unmount(run *podRun) { harness.Unmount(run.mounts) }

// PodProcess returns the process running a pod, if it runs one.
func (k *Kubelet) PodProcess(uid types.UID) *harness.Process {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r := k.pods[uid]; r != nil {
		return r.proc
	}
	return nil
}

// Stop stops every pod process and the reconcile loop.
func (k *Kubelet) Stop() {
	k.cancel()
	k.mu.Lock()
	for _, r := range k.pods {
		if r.proc != nil {
			go r.proc.Kill()
		}
		r.halt()
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// LogTails returns the tail of every pod process's log.
func (k *Kubelet) LogTails(lines int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var sb strings.Builder
	for _, r := range k.pods {
		if r.proc != nil {
			fmt.Fprintf(&sb, "--- pod %s ---\n%s\n", r.proc.Spec.Name, r.proc.LogTail(lines))
		}
	}
	return sb.String()
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func ptr[T any](v T) *T { return &v }
