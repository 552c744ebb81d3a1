package e2e

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// The RED metrics' names as the gateways' prometheus exporter writes them.
const (
	redCalls    = "traces_span_metrics_calls_total"
	redDuration = "traces_span_metrics_duration_milliseconds"
)

// requestDimensions are the span attributes configs/examples/red-by-request.yaml
// makes span_metrics dimensions of, current and older semantic-convention
// names; the profile has none of them.
var requestDimensions = []string{
	"http.request.method", "http.response.status_code", "http.method", "http.status_code",
	"rpc.method", "rpc.response.status_code", "rpc.service", "rpc.grpc.status_code",
}

// latencyBuckets are the gateway profile's explicit histogram bounds, in ms.
var latencyBuckets = []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// promLabel is an attribute's name as a Prometheus label.
func promLabel(attr string) string { return strings.ReplaceAll(attr, ".", "_") }

// scrapeRED reads every gateway's RED metrics endpoint.
func scrapeRED(t *testing.T, topo *harness.Topology) []harness.Scrape {
	t.Helper()
	var out []harness.Scrape
	for _, g := range topo.Gateways {
		s, err := harness.ScrapeMetrics(g.Ports.Prometheus)
		require.NoError(t, err, "scrape %s RED metrics", g.Name)
		out = append(out, s)
	}
	return out
}

// sumRED adds a metric up over every gateway.
func sumRED(scrapes []harness.Scrape, metric string, labelPairs ...string) float64 {
	var total float64
	for _, s := range scrapes {
		total += s.Sum(metric, labelPairs...)
	}
	return total
}

// TestREDMetricsPerServiceAndRequest reads the RED metrics where Prometheus
// does, from the gateways' prometheus exporters, after traffic from the
// OpenTelemetry Go SDK, with the overlay configs/examples/red-by-request.yaml
// (docs/configuration.md), and compares them with the spans the SDK ended:
// every pod of a service counts (payment runs in two pods), each request
// dimension (HTTP and RPC, current and older names) counts the spans that
// carry it, and the latency histogram has the profile's buckets, filled as
// the spans' durations say.
func TestREDMetricsPerServiceAndRequest(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 2, GatewaySet: gatewaySet,
		GatewayOverlays: []string{filepath.Join(harness.RepoRoot(), "configs", "examples", "red-by-request.yaml")},
	})
	shop := startShop(t, topo)
	serveShop(t, shop, 200, 100)
	ended := shop.Ended()

	perService := map[string]float64{}
	for _, sp := range ended {
		perService[sp.Service]++
	}
	var scrapes []harness.Scrape
	eventually(t, 30*time.Second, "RED metrics count every span", func() (bool, string) {
		scrapes = scrapeRED(t, topo)
		got := map[string]float64{}
		for service := range perService {
			got[service] = sumRED(scrapes, redCalls, "service_name", service)
		}
		return maps.Equal(got, perService), fmt.Sprintf("calls per service %v, spans ended %v", got, perService)
	})

	t.Run("every pod of a service counts", func(t *testing.T) {
		for service, want := range perService {
			assert.Equal(t, want, sumRED(scrapes, redCalls, "service_name", service), "calls of %s", service)
		}
	})

	t.Run("request dimensions count the spans that carry them", func(t *testing.T) {
		for _, dim := range requestDimensions {
			want := map[string]float64{}
			for _, sp := range ended {
				if v, ok := sp.Attributes[dim]; ok {
					want[v]++
				}
			}
			require.NotEmpty(t, want, "the shop sends no span with %s", dim)
			got := map[string]float64{}
			for _, s := range scrapes {
				for v, n := range s.LabelValues(redCalls, promLabel(dim)) {
					got[v] += n
				}
			}
			assert.Equal(t, want, got, "calls by %s", dim)
		}
	})

	t.Run("latency histogram has the profile's buckets", func(t *testing.T) {
		want := make([]float64, len(latencyBuckets))
		for i, le := range latencyBuckets {
			for _, sp := range ended {
				if float64(sp.Duration)/float64(time.Millisecond) <= le {
					want[i]++
				}
			}
		}
		got := make([]float64, len(latencyBuckets))
		for _, s := range scrapes {
			fam, ok := s[redDuration]
			require.True(t, ok, "no %s", redDuration)
			for _, m := range fam.GetMetric() {
				require.Equal(t, latencyBuckets, bounds(m), "bucket bounds of %v", m.GetLabel())
				for i, b := range m.GetHistogram().GetBucket()[:len(latencyBuckets)] {
					got[i] += float64(b.GetCumulativeCount())
				}
			}
		}
		assert.Equal(t, want, got, "spans at or under each bound %v", latencyBuckets)
	})
}

// bounds are a histogram's finite upper bounds.
func bounds(m *dto.Metric) []float64 {
	var out []float64
	for _, b := range m.GetHistogram().GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			out = append(out, b.GetUpperBound())
		}
	}
	return out
}

// TestClusterIdentityOnEverySpanAndSeries sets TAILGATE_CLUSTER_NAME and
// checks k8s.cluster.name on every span the backend receives, on every RED
// series Prometheus would scrape and on every RED data point exported
// over OTLP. Set on the gateways alone, the gateways add it; set on both
// tiers with different names, the agents' name stays: the first tier that
// knows sets it and nothing overwrites it.
func TestClusterIdentityOnEverySpanAndSeries(t *testing.T) {
	for _, tc := range []struct {
		name             string
		agents, gateways string
		want             string
	}{
		{name: "gateways", gateways: "eu-west-1", want: "eu-west-1"},
		{name: "agents and gateways", agents: "edge-7", gateways: "eu-west-1", want: "edge-7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := startTopology(t, harness.TopologyConfig{
				Agents: 1, Gateways: 2, GatewaySet: gatewaySet, SinkAttrKeys: []string{"k8s.cluster.name"},
				GatewayEnv: map[string]string{"TAILGATE_CLUSTER_NAME": tc.gateways},
				AgentEnv:   map[string]string{"TAILGATE_CLUSTER_NAME": tc.agents},
			})
			shop := startShop(t, topo)
			serveShop(t, shop, 60, 100)
			settle(t, topo, 2*time.Second, time.Minute)

			spans := 0
			for _, id := range topo.Sink.TraceIDs() {
				for span := range topo.Sink.SpansOf(id) {
					got, _ := topo.Sink.ResourceAttr(span, "k8s.cluster.name")
					require.Equal(t, tc.want, got, "k8s.cluster.name of span %s", span)
					spans++
				}
			}
			require.Positive(t, spans, "no span reached the backend")

			label := promLabel("k8s.cluster.name")
			var scrapes []harness.Scrape
			eventually(t, 30*time.Second, "RED series labelled with the cluster", func() (bool, string) {
				scrapes = scrapeRED(t, topo)
				all := sumRED(scrapes, redCalls)
				labelled := sumRED(scrapes, redCalls, label, tc.want)
				return all > 0 && labelled == all, fmt.Sprintf("%s=%q on %v of %v calls", label, tc.want, labelled, all)
			})
			// The profile's only dimension is the cluster: the shop's spans
			// carry the request attributes, and no series splits by one.
			for _, dim := range requestDimensions {
				for _, s := range scrapes {
					assert.Empty(t, s.LabelValues(redCalls, promLabel(dim)), "RED series split by %s without configs/examples/red-by-request.yaml", dim)
				}
			}

			points := 0
			for _, md := range topo.Sink.Metrics() {
				for _, rm := range md.ResourceMetrics().All() {
					got, _ := rm.Resource().Attributes().Get("k8s.cluster.name")
					require.Equal(t, tc.want, got.AsString(), "resource of OTLP RED metrics %v", rm.Resource().Attributes().AsRaw())
					for _, sm := range rm.ScopeMetrics().All() {
						for _, m := range sm.Metrics().All() {
							if m.Name() != "traces.span.metrics.calls" {
								continue
							}
							for _, dp := range m.Sum().DataPoints().All() {
								got, _ := dp.Attributes().Get("k8s.cluster.name")
								require.Equal(t, tc.want, got.AsString(), "data point %v", dp.Attributes().AsRaw())
								points++
							}
						}
					}
				}
			}
			require.Positive(t, points, "no RED data point exported over OTLP")
		})
	}
}
