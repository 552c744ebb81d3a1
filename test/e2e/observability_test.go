package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestDashboardAndAlertsInPrometheus: what a platform team looks at, on a
// real Prometheus scraping a live topology (two agents, three gateways with
// their span_metrics endpoints, one gateway whose guard does not find
// itself in the ring, and one just started in a static set), labelled as
// the ServiceMonitor labels pods. It loads
// a test copy of the shipped alert rules (shorter `for:` and windows; the
// shipped ones stay promtool-tested as they are). Asserted: every query of
// every dashboard panel returns data; the misconfigured guard fires
// TailgateRebalanceGuardNotInRing for that gateway only; nothing else fires
// while the backend is up; a backend outage fires TailgateBackendBacklog
// and TailgateExportFailures.
func TestDashboardAndAlertsInPrometheus(t *testing.T) {
	// A small backend queue with one consumer and short retries, so that
	// an outage of seconds fills a tenth of the queue and gives batches up,
	// as a long one does with the shipped 5000 batches, 10 consumers and
	// 10 minutes of retries.
	var set []string
	for _, kv := range []string{"sending_queue::queue_size=100", "sending_queue::num_consumers=1", "retry_on_failure::max_interval=2s", "retry_on_failure::max_elapsed_time=5s"} {
		set = append(set, "exporters::otlp_grpc/backend_memory::"+kv)
	}
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 3, GatewaySet: withGatewaySet(set...)})
	// A gateway whose static list names the gateways by name while its
	// guard knows itself by address: it never finds itself in the ring.
	_, lone := startLoneNode(t, "gateway", "", func(p harness.NodePorts) (map[string]string, []string) {
		return map[string]string{
			"TAILGATE_GATEWAY_RESOLVER":         "static",
			"TAILGATE_GATEWAY_STATIC_HOSTNAMES": fmt.Sprintf("[localhost:%d]", p.OTLPGRPC),
		}, withGatewaySet("exporters::otlp_grpc/backend_memory::endpoint=" + topo.Sink.Endpoint())
	})

	// A gateway that has just started in its static set beside a peer: it
	// cannot know where agents routed before its start, so for the agents'
	// lag after it (10s + 2s of clock skew, the profile's static defaults)
	// it keeps the traces its peer owns that reach it (reason not_owned):
	// the guard's panels get data without a membership change.
	_, restarted := startLoneNode(t, "gateway", "", func(p harness.NodePorts) (map[string]string, []string) {
		return map[string]string{
			"TAILGATE_GATEWAY_RESOLVER":         "static",
			"TAILGATE_GATEWAY_STATIC_HOSTNAMES": fmt.Sprintf("[127.0.0.1:%d, 127.0.0.1:1]", p.OTLPGRPC),
		}, withGatewaySet("exporters::otlp_grpc/backend_memory::endpoint=" + topo.Sink.Endpoint())
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct := fmt.Sprintf("127.0.0.1:%d", restarted.OTLPGRPC)
	_, err := harness.Send(ctx, plan(t, 30, 41), []string{direct, direct}, nil)
	require.NoError(t, err)

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, testCopyOfAlertRules(t), 0o644))
	prom, err := harness.StartPrometheus(dir, prometheusConfig(topo, map[string]harness.NodePorts{"gateway-lone": lone, "gateway-restarted": restarted}, rules))
	require.NoError(t, err)
	t.Cleanup(prom.Stop)

	// Traffic through the agents, with one span sent after its trace's
	// decision (a late span).
	plans := plan(t, 1500, 40) // 10 s at 150 traces/s
	last := &plans[0].Spans[len(plans[0].Spans)-1]
	last.SendAt += 2 * decisionWait
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed)

	loneGateway := "tailgate-gateway-lone"
	eventually(t, 2*time.Minute, "the lone gateway's guard alert fires", func() (bool, string) {
		firing := firingAlerts(t, prom)
		return slices.Contains(firing, "TailgateRebalanceGuardNotInRing/"+loneGateway), fmt.Sprint(firing)
	})
	firing := firingAlerts(t, prom)
	assert.Equal(t, []string{"TailgateRebalanceGuardNotInRing/" + loneGateway}, firing, "only the misconfigured guard's alert fires while the backend is up")

	// Backend outage, under traffic.
	topo.Sink.Down()
	outageCtx, endOutage := context.WithTimeout(context.Background(), 3*time.Minute)
	outageSent := make(chan struct{})
	go func() {
		defer close(outageSent)
		_, _ = harness.Send(outageCtx, plan(t, 9000, 42), topo.AgentEndpoints(), nil) // 60 s
	}()
	defer func() { endOutage(); <-outageSent }()
	fired := map[string]bool{}
	eventually(t, 3*time.Minute, "the backend outage fires its alerts", func() (bool, string) {
		for _, a := range firingAlerts(t, prom) {
			fired[strings.Split(a, "/")[0]] = true
		}
		return fired["TailgateBackendBacklog"] && fired["TailgateExportFailures"], fmt.Sprint(fired)
	})
	t.Logf("REPORT alerts fired during the backend outage: %v", slices.Sorted(maps.Keys(fired)))
	require.NoError(t, topo.Sink.Up())

	// Every panel's queries return data from this topology.
	queries := dashboardQueries(t)
	eventually(t, time.Minute, "every dashboard query returns data", func() (bool, string) {
		var empty []string
		for _, q := range queries {
			samples, err := prom.Query(q.expr)
			if err != nil || len(samples) == 0 {
				empty = append(empty, fmt.Sprintf("%q: %s (err %v)", q.panel, q.expr, err))
			}
		}
		return len(empty) == 0, strings.Join(empty, "\n")
	})
	t.Logf("REPORT dashboard: all %d queries of the panels return data", len(queries))
}

// prometheusConfig scrapes every node as the shipped scrape config labels
// pods in a cluster (namespace, pod), each gateway's span_metrics endpoint
// too, and evaluates rules; every 2 s so the test is quick.
func prometheusConfig(topo *harness.Topology, lone map[string]harness.NodePorts, rules string) string {
	type target struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	pod := func(name string) map[string]string {
		return map[string]string{"namespace": "observability", "pod": "tailgate-" + name}
	}
	var telemetry, red []target
	for _, n := range topo.Nodes() {
		telemetry = append(telemetry, target{[]string{fmt.Sprintf("127.0.0.1:%d", n.Ports.Telemetry)}, pod(n.Name)})
		if n.Profile == "gateway" {
			red = append(red, target{[]string{fmt.Sprintf("127.0.0.1:%d", n.Ports.Prometheus)}, pod(n.Name)})
		}
	}
	for name, ports := range lone {
		telemetry = append(telemetry, target{[]string{fmt.Sprintf("127.0.0.1:%d", ports.Telemetry)}, pod(name)})
	}
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": "2s", "evaluation_interval": "2s"},
		"rule_files": []string{rules},
		"scrape_configs": []any{
			map[string]any{"job_name": "tailgate-telemetry", "static_configs": telemetry},
			map[string]any{"job_name": "tailgate-red-metrics", "honor_labels": true, "static_configs": red},
		},
	}
	out, _ := yaml.Marshal(cfg)
	return string(out)
}

// ruleWindow is a range of the shipped rules' expressions.
var ruleWindow = regexp.MustCompile(`\[(\d+[smh])\]`)

// timeScale shrinks the shipped rules' time in the test copy: 10 minutes
// become 30 s (15 scrapes at 2 s), and every `for:` and range window keeps
// its proportion to the others, so that what fires after minutes in a
// cluster fires here in seconds and what a short blip does not fire there
// does not fire here either.
const timeScale = 20

func scaled(t *testing.T, d string) string {
	t.Helper()
	v, err := time.ParseDuration(d)
	require.NoError(t, err)
	return (v / timeScale).String()
}

// testCopyOfAlertRules is the shipped PrometheusRule's groups as a rule
// file, every `for:` and range window divided by timeScale; the
// expressions are otherwise the shipped ones.
func testCopyOfAlertRules(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "prometheusrule.yaml"))
	require.NoError(t, err)
	var rule struct {
		Spec struct {
			Groups []map[string]any `json:"groups"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(data, &rule))
	for _, g := range rule.Spec.Groups {
		g["interval"] = "2s"
		for _, r := range g["rules"].([]any) {
			r := r.(map[string]any)
			if f, ok := r["for"]; ok {
				r["for"] = scaled(t, fmt.Sprint(f))
			}
			r["expr"] = ruleWindow.ReplaceAllStringFunc(fmt.Sprint(r["expr"]), func(w string) string {
				return "[" + scaled(t, w[1:len(w)-1]) + "]"
			})
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	require.NoError(t, err)
	return out
}

// firingAlerts lists the firing alerts as "name/pod", sorted.
func firingAlerts(t *testing.T, prom *harness.Prometheus) []string {
	t.Helper()
	alerts, err := prom.Alerts()
	require.NoError(t, err)
	var out []string
	for _, a := range alerts {
		if a.State == "firing" {
			out = append(out, a.Labels["alertname"]+"/"+a.Labels["pod"])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dashboardPanel is the part of a Grafana panel the test reads.
type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func dashboardPanels(t *testing.T) []dashboardPanel {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "dashboard.json"))
	require.NoError(t, err)
	var d struct {
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(data, &d))
	return d.Panels
}

type panelQuery struct{ panel, expr string }

// dashboardQueries are the queries of every panel, with the dashboard's
// variables as Grafana fills them here: the namespace, a rate interval of
// ten scrapes, and num_traces from the gateways' profile default.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	vars := strings.NewReplacer("$namespace", "observability", "$__rate_interval", "20s", "$num_traces", "28000")
	var out []panelQuery
	for _, p := range dashboardPanels(t) {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			out = append(out, panelQuery{p.Title, vars.Replace(tg.Expr)})
		}
	}
	return out
}
