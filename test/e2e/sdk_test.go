package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// startShop starts the SDK-instrumented shop against the topology's agents;
// it is shut down when the test ends.
func startShop(t *testing.T, topo *harness.Topology) *harness.SDKShop {
	t.Helper()
	shop, err := harness.NewSDKShop(context.Background(), topo.AgentEndpoints(), harness.ShopSeed(t.Name()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = shop.Shutdown(context.Background()) })
	return shop
}

// shopClass is one kind of request the shop serves in a mixed run: n
// requests made by req(i).
type shopClass struct {
	name string
	n    int
	req  func(i int) harness.ShopRequest
}

// serveMix serves the classes' requests interleaved (one of each class in
// turn, until each has served its n) at about rate per second, flushes
// the SDK exporters, and returns the class of every trace.
func serveMix(t *testing.T, shop *harness.SDKShop, classes []shopClass, rate float64) map[pcommon.TraceID]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	class := map[pcommon.TraceID]string{}
	for i := 0; ; i++ {
		served := false
		for _, c := range classes {
			if i >= c.n {
				continue
			}
			served = true
			class[shop.Serve(ctx, c.req(i))] = c.name
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("serving the mix: %v", ctx.Err())
			}
		}
		if !served {
			break
		}
	}
	require.NoError(t, shop.Shutdown(ctx), "flushing the SDK exporters")
	return class
}

// shopRequest is the shop's i-th request of an ordinary day: every 7th
// fails five levels deep, every 11th takes 1.2s, the payment pods take
// turns.
func shopRequest(i int) harness.ShopRequest {
	r := harness.ShopRequest{Fail: i%7 == 3, PaymentPod: i % 2}
	if i%11 == 5 {
		r.Slow = 1200 * time.Millisecond
	}
	return r
}

// serveShop serves n requests (shopRequest) at about rate per second, then
// flushes every SDK exporter as an application does when it stops.
func serveShop(t *testing.T, shop *harness.SDKShop, n int, rate float64) {
	t.Helper()
	serveMix(t, shop, []shopClass{{"shop", n, shopRequest}}, rate)
}

// TestGoSDKTracesArriveWhole sends traffic the way applications do: the
// OpenTelemetry Go SDK (tracer provider per pod, batch span processor,
// OTLP/gRPC exporter with gzip) in four pods of three services on two
// nodes, each request one trace through all three. Every trace with an
// error five levels deep and every slow trace reaches the backend
// complete, no trace arrives in part, the SDK's resource reaches the
// backend, and with TAILGATE_CLUSTER_NAME unset nothing adds a cluster.
func TestGoSDKTracesArriveWhole(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 3, GatewaySet: gatewaySet,
		SinkAttrKeys: []string{"telemetry.sdk.language", "k8s.pod.name", "k8s.cluster.name"},
	})
	shop := startShop(t, topo)
	const requests = 300
	serveShop(t, shop, requests, 100)
	settle(t, topo, 3*time.Second, 2*time.Minute)

	plans := shop.Plans()
	require.Len(t, plans, requests, "traces the SDK ended")
	for _, p := range plans {
		require.Len(t, p.Spans, harness.SpansPerRequest, "spans the SDK ended for trace %s", p.ID)
	}
	ev := harness.Evaluate(plans, harness.SendResult{}, topo.Sink)
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %4d complete %4d partial %d lost %4d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	assertKeptWhole(t, ev)
	assertNormalRate(t, ev)
	assert.Zero(t, ev.Unknown, "spans of traces the shop never made")
	assert.Zero(t, topo.Counters().ReceiverRefused, "spans the collectors refused")

	t.Run("the SDK's resource reaches the backend, and no cluster is made up", func(t *testing.T) {
		pods := map[string]bool{}
		for _, id := range topo.Sink.TraceIDs() {
			for span := range topo.Sink.SpansOf(id) {
				lang, _ := topo.Sink.ResourceAttr(span, "telemetry.sdk.language")
				require.Equal(t, "go", lang, "telemetry.sdk.language of span %s", span)
				pod, _ := topo.Sink.ResourceAttr(span, "k8s.pod.name")
				pods[pod] = true
				cluster, set := topo.Sink.ResourceAttr(span, "k8s.cluster.name")
				require.False(t, set, "span %s has k8s.cluster.name %q with TAILGATE_CLUSTER_NAME unset", span, cluster)
			}
		}
		assert.Len(t, pods, len(harness.ShopServices), "pods whose spans reached the backend: %v", pods)
	})
}
