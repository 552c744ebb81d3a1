package cluster

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// Kubelet plays the kubelet (and the scheduler) for a test cluster that has
// no container runtime. It binds pending pods to its nodes, runs every pod
// of the tailgate image as the real binary from the image's own filesystem
// (an overlay over the exported rootfs, with the pod's volumes, service
// account token, /proc and /sys mounted, as its user), reports pod status
// from the pod's real readiness probe, and on deletion honours preStop and
// the grace period. It pulls images from the registries a test names
// (PullFrom) and runs them the same way. Pods of other images get an IP and
// run nothing: they stand for applications.
//
// It needs root and its own mount namespace (the test binary runs under
// `unshare --net --mount`), and pod IPs in 10.244.0.0/16 routed to lo.
//
// One difference from a real node: all pods share the test's network
// namespace, so two pods cannot both bind 127.0.0.1 on one port. The
// profiles keep pprof and zPages on 127.0.0.1 (never on the pod IP), so the
// kubelet hands each pod distinct ports for those two with --set flags
// after the pod's arguments, where a real pod's own loopback would make
// that unnecessary.
type Kubelet struct {
	cp     *ControlPlane
	rootfs string   // exported image filesystem
	image  string   // image reference whose pods run tailgate
	entry  []string // the image's entrypoint
	dir    string
	Nodes  []string

	mu         sync.Mutex
	registries map[string]bool // hosts it may pull images from (PullFrom)
	// nodeDNS: pods resolve through their node's DNS cache (UseNodeDNS).
	nodeDNS bool
	pullMu  sync.Mutex
	pulled  map[string]containerImage // by reference, guarded by pullMu
	pods    map[types.UID]*podRun
	nextIP  int
	rr      int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
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

// StartKubelet registers nodes and starts reconciling pods.
func StartKubelet(cp *ControlPlane, rootfs, image string, entrypoint []string, dir string, nodes int) (*Kubelet, error) {
	k := &Kubelet{cp: cp, rootfs: rootfs, image: image, entry: entrypoint, dir: dir, pods: map[types.UID]*podRun{}, nextIP: 10,
		registries: map[string]bool{}, pulled: map[string]containerImage{}}
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

// sync binds pending pods, starts new ones and stops deleted ones.
func (k *Kubelet) sync(ctx context.Context) error {
	list, err := k.cp.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	seen := map[types.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.Spec.NodeName != "" && k.nodeIP(pod.Spec.NodeName) == "" {
			continue // a real node's pod (see Node)
		}
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
	k.removePulled()
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

// UseNodeDNS makes the pods started from now on resolve names through a
// DNS server on their node's IP, as a kubelet's --cluster-dns does with
// NodeLocal DNSCache: it writes each pod's /etc/resolv.conf. The test
// serves one there (ClusterDNS.ServeNodeCaches, with NodeIPs).
func (k *Kubelet) UseNodeDNS() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nodeDNS = true
}

// NodeIPs are the registered nodes' IPs.
func (k *Kubelet) NodeIPs() []string {
	ips := make([]string, len(k.Nodes))
	for i := range k.Nodes {
		ips[i] = NodeIP(i)
	}
	return ips
}
