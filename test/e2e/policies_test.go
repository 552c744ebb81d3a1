package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// classOutcome is what reached the backend of one class's traces, and
// which policy kept them (keptBy, by the tailsampling.policy recordpolicy
// puts on kept spans; "" when the sink was not told to record it).
type classOutcome struct {
	sent, complete, partial, lost int
	keptBy                        map[string]int
}

// outcomesByClass judges every trace the shop made against the sink,
// class by class.
func outcomesByClass(t *testing.T, shop *harness.SDKShop, class map[pcommon.TraceID]string, sink *harness.Sink) map[string]classOutcome {
	t.Helper()
	byClass := map[string][]harness.TracePlan{}
	for _, p := range shop.Plans() {
		name, ok := class[p.ID]
		require.True(t, ok, "trace %s was not served by the mix", p.ID)
		byClass[name] = append(byClass[name], p)
	}
	out := map[string]classOutcome{}
	for name, plans := range byClass {
		o := classOutcome{keptBy: map[string]int{}}
		ev := harness.Evaluate(plans, harness.SendResult{}, sink)
		for _, k := range harness.Kinds {
			ko := ev.ByKind[k]
			o.sent += ko.Sent
			o.complete += ko.Complete
			o.partial += ko.Partial
			o.lost += ko.Lost
		}
		for _, p := range plans {
			for span := range sink.SpansOf(p.ID) {
				policy, _ := sink.ScopeAttr(span, "tailsampling.policy")
				o.keptBy[policy]++
				break
			}
		}
		out[name] = o
		t.Logf("%-22s sent %4d complete %4d partial %d lost %4d kept by %v", name, o.sent, o.complete, o.partial, o.lost, o.keptBy)
	}
	return out
}

// assertShare checks that a class's traces were kept whole at share p,
// within 4 standard deviations of the binomial, and none in part.
func assertShare(t *testing.T, o classOutcome, p float64, what string) {
	t.Helper()
	n := float64(o.sent)
	require.Positive(t, n, "%s: no traces sent", what)
	sigma := math.Sqrt(n * p * (1 - p))
	assert.InDelta(t, n*p, float64(o.complete), 4*sigma, "%s: kept %d of %d (expected %.0f +- %.0f)", what, o.complete, o.sent, n*p, 4*sigma)
	assert.Zero(t, o.partial, "%s: traces kept in part", what)
}

// assertAllWhole checks that every trace of a class arrived complete.
func assertAllWhole(t *testing.T, o classOutcome, what string) {
	t.Helper()
	require.Positive(t, o.sent, "%s: no traces sent", what)
	assert.Equal(t, o.sent, o.complete, "%s: %d of %d complete (%d partial, %d lost)", what, o.complete, o.sent, o.partial, o.lost)
}

// TestApplicationsCannotSteerSampling sends, through the agents as
// applications do, traces that claim what only the distribution may say,
// against the shipped profile and policies (errors, slow, 10%):
//   - normal traces whose root span carries tailgate.rebalance.keep=true
//     (before the trust boundary: every one kept, 267 of 267);
//   - error traces whose failing span carries tailgate.rebalance.marker=true
//     (before: every one arrived without that span, 60 of 60 partial);
//   - normal traces whose caller's tracestate carries the largest OTEP 235
//     randomness (rv), which would pass every probabilistic policy if the
//     usetracestate gate were on.
//
// Each kind is kept exactly as a plain trace of its kind would be, by the
// policy that would keep it.
func TestApplicationsCannotSteerSampling(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 3, GatewaySet: gatewaySet,
		SinkAttrKeys: []string{"tailgate.rebalance.keep", "tailgate.rebalance.marker", "tailsampling.policy"},
	})
	shop := startShop(t, topo)
	keep := attribute.Bool("tailgate.rebalance.keep", true)
	marker := attribute.Bool("tailgate.rebalance.marker", true)
	class := serveMix(t, shop, []shopClass{
		{"forged keep", 500, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, RootAttributes: []attribute.KeyValue{keep}}
		}},
		{"forged marker", 100, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, Fail: true, DBAttributes: []attribute.KeyValue{marker}}
		}},
		{"tracestate randomness", 400, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, TraceState: "ot=rv:ffffffffffffff"}
		}},
	}, 150)
	settle(t, topo, 3*time.Second, 2*time.Minute)
	outcomes := outcomesByClass(t, shop, class, topo.Sink)

	assertShare(t, outcomes["forged keep"], samplingPercentage/100.0, "normal traces claiming the guard's keep")
	assertAllWhole(t, outcomes["forged marker"], "error traces whose failing span claims to be a marker")
	assertShare(t, outcomes["tracestate randomness"], samplingPercentage/100.0, "normal traces with the largest tracestate rv")

	t.Run("kept traces name the policy a plain trace of their kind meets", func(t *testing.T) {
		// The guard's keep policy comes first and recordpolicy names the
		// first policy that sampled: a forged keep that reached it would
		// name rebalance_guard here.
		for name, want := range map[string]string{
			"forged keep": "probabilistic", "forged marker": "errors", "tracestate randomness": "probabilistic",
		} {
			o := outcomes[name]
			wantBy := map[string]int{}
			if kept := o.complete + o.partial; kept > 0 {
				wantBy[want] = kept
			}
			assert.Equal(t, wantBy, o.keptBy, "%s: traces kept, by the policy that kept them", name)
		}
	})

	t.Run("the claims are removed and counted", func(t *testing.T) {
		for _, sp := range shop.Ended() {
			for _, key := range []string{"tailgate.rebalance.keep", "tailgate.rebalance.marker"} {
				_, ok := topo.Sink.SpanAttr(pcommon.SpanID(sp.SpanID), key)
				assert.False(t, ok, "span %s reached the backend with %s", sp.SpanID, key)
			}
		}
		forged := outcomes["forged keep"].sent + outcomes["forged marker"].sent
		assert.GreaterOrEqual(t, topo.Counters().ReservedRemoved, float64(forged), "spans counted as carrying the guard's attributes")
	})
}

// TestPolicyLibrary runs configs/examples/policy-library.yaml (README.md,
// "Your sampling policies") on 3 gateways, with a trace size bound, and
// checks each policy's kept set against what the OpenTelemetry SDK shop
// sent: probes dropped even when they fail; every trace of the critical
// service and of the admin route; a 5% share of the noisy service and 60%
// of the rare one; the capped service within its token bucket; 10% of
// everything else; every error and slow trace whole; traces over the size
// bound dropped, errors included. Kept spans name the policy that kept
// them (recordpolicy).
func TestPolicyLibrary(t *testing.T) {
	const maxTraceBytes = 64 << 10
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 3, SinkAttrKeys: []string{"tailsampling.policy"},
		GatewayOverlays: []string{filepath.Join(harness.RepoRoot(), "configs", "examples", "policy-library.yaml")},
		GatewaySet:      withGatewaySet(fmt.Sprintf("processors::tail_sampling::maximum_trace_size_bytes=%d", maxTraceBytes)),
	})
	shop := startShop(t, topo)
	begun := time.Now()
	class := serveMix(t, shop, []shopClass{
		{"checkout", 600, func(i int) harness.ShopRequest { return harness.ShopRequest{PaymentPod: i} }},
		{"checkout error", 60, func(i int) harness.ShopRequest { return harness.ShopRequest{PaymentPod: i, Fail: true} }},
		{"checkout slow", 60, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, Slow: 1200 * time.Millisecond}
		}},
		{"probe", 100, func(i int) harness.ShopRequest {
			return harness.ShopRequest{Route: []string{"/healthz", "/readyz"}[i%2], Fail: i%4 == 0}
		}},
		{"admin", 100, func(int) harness.ShopRequest { return harness.ShopRequest{Route: "/admin"} }},
		{"ledger", 100, func(int) harness.ShopRequest { return harness.ShopRequest{Entry: "ledger"} }},
		{"search", 400, func(int) harness.ShopRequest { return harness.ShopRequest{Entry: "search"} }},
		{"reviews", 200, func(int) harness.ShopRequest { return harness.ShopRequest{Entry: "reviews"} }},
		{"catalog", 400, func(int) harness.ShopRequest { return harness.ShopRequest{Entry: "catalog"} }},
		{"huge error", 30, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, Fail: true, Payload: maxTraceBytes + 16<<10}
		}},
		{"large error", 30, func(i int) harness.ShopRequest {
			return harness.ShopRequest{PaymentPod: i, Fail: true, Payload: maxTraceBytes / 2}
		}},
	}, 150)
	settle(t, topo, 3*time.Second, 2*time.Minute)
	// An upper bound on the time any decision can have been made in.
	window := time.Since(begun).Seconds()
	o := outcomesByClass(t, shop, class, topo.Sink)

	t.Run("errors and slow traces, whole", func(t *testing.T) {
		assertAllWhole(t, o["checkout error"], "error traces")
		assertAllWhole(t, o["checkout slow"], "slow traces")
		assertAllWhole(t, o["large error"], "error traces under the size bound")
	})
	t.Run("probes dropped, failing ones too", func(t *testing.T) {
		assert.Equal(t, o["probe"].sent, o["probe"].lost, "probe traces that reached the backend")
	})
	t.Run("every trace of the critical service and of the admin route", func(t *testing.T) {
		assertAllWhole(t, o["ledger"], "ledger")
		assertAllWhole(t, o["admin"], "admin route")
	})
	t.Run("shares: 5% of the noisy service, 60% of the rare one, 10% of the rest", func(t *testing.T) {
		assertShare(t, o["search"], 0.05, "search")
		assertShare(t, o["reviews"], 0.60, "reviews")
		assertShare(t, o["checkout"], 0.10, "checkout")
	})
	t.Run("the capped service within its token bucket on each gateway", func(t *testing.T) {
		// 5 spans/s with a burst of 10, per gateway; a catalog trace has 2
		// spans. The bound holds however slowly the machine ran.
		c := o["catalog"]
		bound := 3 * (10 + 5*window) / 2
		t.Logf("catalog: kept %d of %d, at most %.0f in %.0fs", c.complete, c.sent, bound, window)
		assert.Positive(t, c.complete, "the cap keeps some")
		assert.LessOrEqual(t, float64(c.complete), bound, "catalog traces kept beyond the cap")
		assert.Less(t, float64(c.complete), float64(c.sent)/2, "the cap must bind for this test to mean anything")
		assert.Zero(t, c.partial)
	})
	t.Run("traces over the size bound dropped, errors included", func(t *testing.T) {
		assert.Equal(t, o["huge error"].sent, o["huge error"].lost, "traces over maximum_trace_size_bytes that reached the backend")
	})
	t.Run("kept spans name the policy that kept them", func(t *testing.T) {
		want := map[string]string{
			"checkout error": "errors", "checkout slow": "slow", "ledger": "ledger-all", "admin": "admin-route",
			"reviews": "reviews-60pc", "search": "search-5pc", "catalog": "catalog-capped", "checkout": "others-10pc",
		}
		for _, sp := range shop.Ended() {
			name := class[pcommon.TraceID(sp.TraceID)]
			if _, kept := topo.Sink.SpansOf(pcommon.TraceID(sp.TraceID))[pcommon.SpanID(sp.SpanID)]; !kept || want[name] == "" {
				continue
			}
			policy, _ := topo.Sink.ScopeAttr(pcommon.SpanID(sp.SpanID), "tailsampling.policy")
			assert.Regexp(t, "^("+want[name]+")$", policy, "%s span %s", name, sp.SpanID)
		}
	})
}
