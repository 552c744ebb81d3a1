// Not in fuzzing builds: the k8s resolver is left out of them
// (membership_k8s_fuzz.go).

//go:build !tailgate_fuzz

package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

func endpointSlice(name string, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "observability", Labels: map[string]string{discoveryv1.LabelServiceName: "gw"}},
		Endpoints:  endpoints,
	}
}

func endpoint(ready *bool, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func startK8s(t *testing.T, cfg K8sResolver, objs ...*discoveryv1.EndpointSlice) (*recorder, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		_, err := client.DiscoveryV1().EndpointSlices(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	k, err := newK8sMembership(cfg, zap.NewNop())
	require.NoError(t, err)
	k.newClient = func() (kubernetes.Interface, error) { return client, nil }
	rec := &recorder{}
	require.NoError(t, k.start(context.Background(), rec.onChange))
	t.Cleanup(func() { require.NoError(t, k.shutdown(context.Background())) })
	return rec, client
}

// TestK8sMembershipListsReadyEndpoints: every address of every endpoint not
// explicitly not-ready, across the Service's slices, times every port.
func TestK8sMembershipListsReadyEndpoints(t *testing.T) {
	yes, no := true, false
	rec, _ := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317, 4318}},
		endpointSlice("gw-a", endpoint(&yes, "10.0.0.1"), endpoint(&no, "10.0.0.9")),
		endpointSlice("gw-b", endpoint(nil, "10.0.0.2")))
	assert.Equal(t, []string{"10.0.0.1:4317", "10.0.0.1:4318", "10.0.0.2:4317", "10.0.0.2:4318"}, rec.last())
}

// TestK8sMembershipWithoutPortsListsAddresses: with no ports the exporter
// hashes the bare addresses, and so does the guard.
func TestK8sMembershipWithoutPortsListsAddresses(t *testing.T) {
	yes := true
	rec, _ := startK8s(t, K8sResolver{Service: "gw.observability"},
		endpointSlice("gw-a", endpoint(&yes, "10.0.0.1", "fd00::1")))
	assert.Equal(t, []string{"10.0.0.1", "fd00::1"}, rec.last())
}

// TestK8sMembershipFollowsSliceChanges: a gateway published, then one
// leaving, as the endpointslice controller reports them.
func TestK8sMembershipFollowsSliceChanges(t *testing.T) {
	yes := true
	rec, client := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317}},
		endpointSlice("gw-a", endpoint(&yes, "10.0.0.1")))
	require.Equal(t, []string{"10.0.0.1:4317"}, rec.last())
	slices := client.DiscoveryV1().EndpointSlices("observability")
	_, err := slices.Update(context.Background(), endpointSlice("gw-a", endpoint(&yes, "10.0.0.1"), endpoint(&yes, "10.0.0.2")), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rec.last()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, slices.Delete(context.Background(), "gw-a", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return len(rec.last()) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestK8sMembershipServiceNames: "name.namespace" and longer DNS-style
// names address the Service's namespace; what the exporter rejects is
// rejected.
func TestK8sMembershipServiceNames(t *testing.T) {
	for service, want := range map[string][2]string{
		"gw.observability":                   {"gw", "observability"},
		"gw.observability.svc.cluster.local": {"gw", "observability"},
		"gw":                                 {"gw", "default"}, // outside a pod: the exporter's fallback
	} {
		k, err := newK8sMembership(K8sResolver{Service: service}, zap.NewNop())
		require.NoError(t, err)
		assert.Equal(t, want, [2]string{k.name, k.ns}, service)
	}
	for _, service := range []string{".observability", "gw..svc.cluster.local", "gw.observability.cluster.local", "gw.observability.svc"} {
		_, err := newK8sMembership(K8sResolver{Service: service}, zap.NewNop())
		assert.Error(t, err, service)
	}
}

// TestK8sMembershipIsIncrementalLikeTheExporter: the exporter keeps one set
// of hosts that each slice event edits, so a host two slices list leaves
// the agents' ring when either slice drops it (an endpoint moving between
// slices, one slice of several deleted). The guard must follow that ring,
// not the union of the slices a rebuild would give.
func TestK8sMembershipIsIncrementalLikeTheExporter(t *testing.T) {
	yes := true
	rec, client := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317}},
		endpointSlice("gw-a", endpoint(&yes, "10.0.0.1"), endpoint(&yes, "10.0.0.2")),
		endpointSlice("gw-b", endpoint(&yes, "10.0.0.2"), endpoint(&yes, "10.0.0.3")))
	require.Equal(t, []string{"10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"}, rec.last())
	slices := client.DiscoveryV1().EndpointSlices("observability")

	// 10.0.0.2 leaves gw-a but stays in gw-b: the exporter deletes it.
	_, err := slices.Update(context.Background(), endpointSlice("gw-a", endpoint(&yes, "10.0.0.1")), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rec.last()) == 2 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"10.0.0.1:4317", "10.0.0.3:4317"}, rec.last())

	// The next update of gw-b, whatever it changes, adds every host it
	// lists that the set lacks: 10.0.0.2 is back.
	_, err = slices.Update(context.Background(), endpointSlice("gw-b", endpoint(&yes, "10.0.0.2"), endpoint(&yes, "10.0.0.3"), endpoint(&yes, "10.0.0.4")), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rec.last()) == 4 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317", "10.0.0.4:4317"}, rec.last())

	// Deleting gw-b removes its hosts, also one gw-a lists again meanwhile.
	_, err = slices.Update(context.Background(), endpointSlice("gw-a", endpoint(&yes, "10.0.0.1"), endpoint(&yes, "10.0.0.3")), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, slices.Delete(context.Background(), "gw-b", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return len(rec.last()) == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"10.0.0.1:4317"}, rec.last())
}

// TestK8sMembershipDualStack: a dual-stack Service has one slice per
// family; the exporter lists both addresses of every pod, the IPv6 one in
// brackets with a port.
func TestK8sMembershipDualStack(t *testing.T) {
	yes := true
	rec, _ := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317}},
		endpointSlice("gw-v4", endpoint(&yes, "10.0.0.1"), endpoint(&yes, "10.0.0.2")),
		endpointSlice("gw-v6", endpoint(&yes, "fd00::1"), endpoint(&yes, "fd00::2")))
	assert.Equal(t, []string{"10.0.0.1:4317", "10.0.0.2:4317", "[fd00::1]:4317", "[fd00::2]:4317"}, rec.last())
}

// TestK8sMembershipFirstListIsOneSet: a Service with several slices is
// reported once, whole, when the first list is in, not slice by slice
// (each partial set would look like a membership change).
func TestK8sMembershipFirstListIsOneSet(t *testing.T) {
	yes := true
	rec, _ := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317}},
		endpointSlice("gw-a", endpoint(&yes, "10.0.0.1")),
		endpointSlice("gw-b", endpoint(&yes, "10.0.0.2")),
		endpointSlice("gw-c", endpoint(&yes, "10.0.0.3")))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, [][]string{{"10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"}}, rec.sets)
}

// TestK8sMembershipReturnHostnames: with return_hostnames the exporter
// lists "hostname.service.namespace" and skips endpoints that have no
// hostname yet.
func TestK8sMembershipReturnHostnames(t *testing.T) {
	yes := true
	named := func(host, addr string) discoveryv1.Endpoint {
		ep := endpoint(&yes, addr)
		ep.Hostname = &host
		return ep
	}
	rec, _ := startK8s(t, K8sResolver{Service: "gw.observability", Ports: []int32{4317}, ReturnHostnames: true},
		endpointSlice("gw-a", named("gw-0", "10.0.0.1"), named("gw-1", "10.0.0.2"), endpoint(&yes, "10.0.0.3")))
	assert.Equal(t, []string{"gw-0.gw.observability:4317", "gw-1.gw.observability:4317"}, rec.last())
}
