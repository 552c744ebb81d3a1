// The k8s resolver is the only part of the processor that needs client-go;
// fuzzing builds (tag tailgate_fuzz) leave it out, see membership_k8s_fuzz.go.

//go:build !tailgate_fuzz

package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// k8sMembership watches the EndpointSlices of a Service exactly like the
// loadbalancing exporter's k8s resolver (resolver_k8s.go and
// resolver_k8s_handler.go of the pinned contrib release): an incremental
// set of hosts (the address of every endpoint not explicitly not-ready, or
// with return_hostnames its "hostname.service.namespace"), changed by
// each slice event, listed sorted and times every port (the bare host when
// no port is set). `timeout` bounds each list and watch request.
//
// The set is incremental, not rebuilt from the slices, because the agents'
// ring is: a host listed by two slices is removed when either slice drops
// it (during an endpoint's move between slices, or when one of a dual-stack
// pair of slices goes away), and the guard must hold the same ring as the
// agents, not a more correct one.
type k8sMembership struct {
	cfg       K8sResolver
	name, ns  string
	logger    *zap.Logger
	newClient func() (kubernetes.Interface, error)
	cancel    context.CancelFunc

	mu       sync.Mutex
	hosts    map[string]bool
	onChange func([]string)
	// synced: the initial list is in. Until then events only fill the set,
	// so that a Service with several slices does not appear slice by slice
	// (which the guard would take for membership changes).
	synced bool
}

// The exporter's k8s resolver's list/watch timeout default, and how long
// Start waits for the first list (the exporter waits as long).
const (
	defaultK8sListWatchTimeout = time.Minute
	k8sCacheSyncWait           = time.Minute
)

func newK8sMembership(cfg K8sResolver, logger *zap.Logger) (*k8sMembership, error) {
	name, ns, nsGiven, err := parseK8sService(cfg.Service)
	if err != nil {
		return nil, err
	}
	if !nsGiven {
		// The exporter's fallback: this pod's namespace, else "default".
		ns = "default"
		if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = string(data)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultK8sListWatchTimeout
	}
	return &k8sMembership{cfg: cfg, name: name, ns: ns, logger: logger, newClient: defaultK8sClient, hosts: map[string]bool{}}, nil
}

// defaultK8sClient finds the API server as the exporter does
// (controller-runtime's config.GetConfig): $KUBECONFIG, else the in-cluster
// service account, else ~/.kube/config.
func defaultK8sClient() (kubernetes.Interface, error) {
	loadKubeconfig := func() (*rest.Config, error) {
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	var cfg *rest.Config
	var err error
	if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
		cfg, err = loadKubeconfig()
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		if cfg, err = loadKubeconfig(); err != nil {
			err = fmt.Errorf("no in-cluster config and no kubeconfig: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (k *k8sMembership) start(_ context.Context, onChange func([]string)) error {
	client, err := k.newClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	// One typed informer, not an informer factory: the factory package
	// links every API group's informers into the binary (~9 MiB).
	selector := discoveryv1.LabelServiceName + "=" + k.name
	timeoutSeconds := int64(k.cfg.Timeout.Seconds())
	slices := client.DiscoveryV1().EndpointSlices(k.ns)
	// As client-go's generated informers do, the client tells the reflector
	// whether it can stream the initial list over a watch (a fake cannot).
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector, o.TimeoutSeconds = selector, &timeoutSeconds
			return slices.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector, o.TimeoutSeconds = selector, &timeoutSeconds
			return slices.Watch(ctx, o)
		},
	}, client)
	inf := cache.NewSharedIndexInformer(lw, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	k.onChange = onChange
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.onAdd(obj) },
		UpdateFunc: k.onUpdate,
		DeleteFunc: k.onDelete,
	})
	if err != nil {
		cancel()
		return err
	}
	go inf.Run(ctx.Done())
	markSynced := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.synced = true
		k.publishLocked()
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, k8sCacheSyncWait)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		k.logger.Warn("rebalance_guard: EndpointSlice cache not synced yet; the guard stays idle until it is",
			zap.String("service", k.cfg.Service))
		go func() {
			if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				markSynced()
			}
		}()
		return nil
	}
	markSynced()
	return nil
}

// onAdd, onUpdate and onDelete change the host set as the exporter's
// handler does (OnAdd, OnUpdate, OnDelete).
func (k *k8sMembership) onAdd(obj any) {
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := false
	for h := range k.sliceHosts(slice) {
		if !k.hosts[h] {
			k.hosts[h], changed = true, true
		}
	}
	if changed {
		k.publishLocked()
	}
}

func (k *k8sMembership) onUpdate(oldObj, newObj any) {
	oldSlice, ok1 := oldObj.(*discoveryv1.EndpointSlice)
	newSlice, ok2 := newObj.(*discoveryv1.EndpointSlice)
	if !ok1 || !ok2 {
		return
	}
	oldHosts, newHosts := k.sliceHosts(oldSlice), k.sliceHosts(newSlice)
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := false
	for h := range oldHosts {
		if !newHosts[h] {
			delete(k.hosts, h) // even if another slice still lists it, as the exporter does
			changed = true
		}
	}
	for h := range newHosts {
		if !k.hosts[h] {
			k.hosts[h], changed = true, true
		}
	}
	if changed {
		k.publishLocked()
	}
}

func (k *k8sMembership) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || slice == nil {
		return
	}
	hosts := k.sliceHosts(slice)
	if len(hosts) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for h := range hosts {
		delete(k.hosts, h)
	}
	k.publishLocked()
}

// sliceHosts is the exporter's convertToEndpoints: the addresses of the
// endpoints not explicitly not-ready, or their hostnames with
// return_hostnames (an endpoint without one is skipped until it has one).
func (k *k8sMembership) sliceHosts(slice *discoveryv1.EndpointSlice) map[string]bool {
	hosts := map[string]bool{}
	for _, ep := range slice.Endpoints {
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		for _, addr := range ep.Addresses {
			if !k.cfg.ReturnHostnames {
				hosts[addr] = true
			} else if ep.Hostname != nil && *ep.Hostname != "" {
				hosts[*ep.Hostname] = true
			}
		}
	}
	return hosts
}

// publishLocked reports the endpoint list as the exporter's resolve()
// builds it: each host (as "hostname.service.namespace" with
// return_hostnames) times every port, sorted.
func (k *k8sMembership) publishLocked() {
	if !k.synced {
		return
	}
	out := []string{}
	for h := range k.hosts {
		if k.cfg.ReturnHostnames {
			h = h + "." + k.name + "." + k.ns
		}
		if len(k.cfg.Ports) == 0 {
			out = append(out, h)
		}
		for _, port := range k.cfg.Ports {
			out = append(out, net.JoinHostPort(h, strconv.Itoa(int(port))))
		}
	}
	sort.Strings(out)
	k.onChange(out)
}

func (k *k8sMembership) shutdown(context.Context) error {
	if k.cancel != nil {
		k.cancel()
	}
	return nil
}
