package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
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

// k8sMembership watches the EndpointSlices of a Service like the
// loadbalancing exporter's k8s resolver: every address of an endpoint not
// explicitly not-ready, times every port, as ip:port (the bare address when
// no port is set); `timeout` bounds each list and watch request. Its client
// config comes from the in-cluster service account, else KUBECONFIG.
type k8sMembership struct {
	cfg       K8sResolver
	name, ns  string
	logger    *zap.Logger
	newClient func() (kubernetes.Interface, error)
	cancel    context.CancelFunc
	mu        sync.Mutex
}

// The exporter's k8s resolver's list/watch timeout default, and how long
// Start waits for the first list (the exporter waits as long).
const (
	defaultK8sListWatchTimeout = time.Minute
	k8sCacheSyncWait           = time.Minute
)

func newK8sMembership(cfg K8sResolver, logger *zap.Logger) (*k8sMembership, error) {
	name, ns, ok := strings.Cut(cfg.Service, ".")
	if !ok {
		ns = "default"
		if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(data))
		}
	}
	if i := strings.IndexByte(ns, '.'); i >= 0 {
		ns = ns[:i] // "svc.ns.svc.cluster.local"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultK8sListWatchTimeout
	}
	return &k8sMembership{cfg: cfg, name: name, ns: ns, logger: logger, newClient: defaultK8sClient}, nil
}

func defaultK8sClient() (kubernetes.Interface, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("no in-cluster config and no kubeconfig: %w", err)
		}
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
	publish := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		onChange(k.endpoints(inf.GetStore().List()))
	}
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { publish() },
		UpdateFunc: func(any, any) { publish() },
		DeleteFunc: func(any) { publish() },
	})
	if err != nil {
		cancel()
		return err
	}
	go inf.Run(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, k8sCacheSyncWait)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		k.logger.Warn("rebalance_guard: EndpointSlice cache not synced yet; the guard stays idle until it is",
			zap.String("service", k.cfg.Service))
		return nil
	}
	publish()
	return nil
}

func (k *k8sMembership) endpoints(objs []any) []string {
	var out []string
	for _, o := range objs {
		slice, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				if len(k.cfg.Ports) == 0 {
					out = append(out, addr)
				}
				for _, port := range k.cfg.Ports {
					out = append(out, net.JoinHostPort(addr, strconv.Itoa(int(port))))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func (k *k8sMembership) shutdown(context.Context) error {
	if k.cancel != nil {
		k.cancel()
	}
	return nil
}
