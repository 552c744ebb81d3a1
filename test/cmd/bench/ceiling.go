package main

// Each tier alone at its own ceiling: pre-encoded OTLP requests replayed
// as fast as the process under test takes them, that process pinned to one
// CPU and the replay (and the null sinks it exports to) to the other, so
// the figures are the tier's and not the load generator's.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tailgate-dev/tailgate/test/harness"
	k8srender "github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

const (
	// collectorCPU runs the process under test; benchCPU the replay, the
	// null sinks and everything else of the bench.
	collectorCPU, benchCPU = 1, 0
	// ceilingRuns repeats every measurement, to show its variance.
	ceilingRuns = 3
	// ceilingDecisionWait is the gateways' decision_wait here: short, so a
	// run's buffered traces are decided soon after the replay ends.
	ceilingDecisionWait = 2 * time.Second
	// ceilingPlanSpan is how long the ceiling load's trace starts are
	// laid out over, and ceilingLatencyThreshold its slow traces'
	// threshold (the policies' latency threshold in these runs).
	ceilingPlanSpan         = 10 * time.Second
	ceilingLatencyThreshold = 100 * time.Millisecond
	// replayConcurrency is how many requests the replay keeps in flight
	// (an agent's or SDK's exporters keep several).
	replayConcurrency = 8
	// agentReplayFor is how long an agent run lasts: agents keep no state
	// per trace, so the replay loops over its requests.
	agentReplayFor = 8 * time.Second
	// agentWarmupFor is how long an agent takes the same load before its
	// run is measured (a gateway takes a load of other traces once).
	agentWarmupFor = 3 * time.Second
	// ceilingWarmupSpans is a gateway's warm-up load: more than it buffers
	// at its ceiling (decision_wait and a tick of its rate).
	ceilingWarmupSpans = 300_000
	// idleRuns starts each gateway config this often for its startup time
	// and idle RSS, read idleFor after it is healthy.
	idleRuns = 3
	idleFor  = 2 * time.Second
)

// spanMetricsVariants change one of span_metrics' settings of the gateway
// profile (configs/gateway.yaml) to upstream's default, or its opposite
// where the profile keeps upstream's (exemplars).
var spanMetricsVariants = []struct {
	name string
	set  []string
}{
	{"exponential histogram", []string{"connectors::span_metrics::histogram::explicit=null", "connectors::span_metrics::histogram::exponential::max_size=160"}},
	{"upstream's 17 buckets", []string{"connectors::span_metrics::histogram::explicit::buckets=null"}},
	{"exemplars on", []string{"connectors::span_metrics::exemplars::enabled=true"}},
	{"no cardinality limit", []string{"connectors::span_metrics::aggregation_cardinality_limit=0"}},
	{"no resource key attributes", []string{"connectors::span_metrics::resource_metrics_key_attributes=[]"}},
	{"all upstream defaults", []string{
		"connectors::span_metrics::histogram::explicit::buckets=null",
		"connectors::span_metrics::dimensions=[]",
		"connectors::span_metrics::aggregation_cardinality_limit=0",
		"connectors::span_metrics::resource_metrics_key_attributes=[]",
	}},
}

// tierConfig is one way to run a tier: a binary with a config and env.
type tierConfig struct {
	name, tier  string // tier: "agent" or "gateway"
	bin, config string
	args        []string // after --config (the shipped gateways' feature gates)
	env         map[string]string
	// set are collector --set flags of a tailgate configuration, after the
	// bench's own (ceilingSet).
	set []string
	// stock configurations read the bench's STOCK_* variables, and take
	// no --set flags.
	stock bool
	// mtls runs the tier with mutual TLS on its tailgate side: a gateway
	// takes the replay over mTLS, an agent exports to null sinks over mTLS
	// (benchTLS's certificates).
	mtls bool
	// optional configurations are measured only when -only names them:
	// comparisons already made (their figures stay in git history), left
	// out so that `make bench` stays under 15 minutes.
	optional bool
	// twoCPUs pins the process to both CPUs instead of collectorCPU alone
	// (the replay and the sinks stay on benchCPU, which it then shares).
	twoCPUs bool
	// podMemory is the memory limit of the cgroup the run is in: tailgate's
	// tiers run in their shipped pod's memory (the base's limit), so that
	// memory_limiter reads the pod's limit as in Kubernetes and a run whose
	// heap reaches its soft limit is refused, which fails the measurement.
	// 0, the stock configurations: no limit, as their docs set none.
	podMemory int64
}

// cpus is the taskset CPU list c runs on.
func (c tierConfig) cpus() string {
	if c.twoCPUs {
		return fmt.Sprintf("%d,%d", benchCPU, collectorCPU)
	}
	return strconv.Itoa(collectorCPU)
}

// tierRun is one measurement of a tier at saturation.
type tierRun struct {
	spans       int64
	cpu, wall   time.Duration
	system      time.Duration // of cpu, the kernel's
	minorFaults int64
	peakRSS     int64 // the process's high-water mark (VmHWM), warm-up included
	failed      int64
	retried     int64 // refusals the replay sent again (harness.Replay)
	perCPUSec   float64
	perWallSec  float64
	requestSize float64
	// A gateway's: bytes of heap per span its tail_sampling buffers, and
	// what the backend received of each kind of trace.
	heapPerSpan float64
	// exportFailed counts the spans its exporter gave up on: those of a
	// request the backend refused, such as one over its intake limit.
	exportFailed float64
	kept         map[harness.Kind]keptTraces
	sent         map[harness.Kind]int // traces replayed, by kind
}

// keptTraces is what the backend received of one kind of trace in a run:
// how many traces, how many of them whole, and the time from the
// acknowledgement of a trace's last span by the gateway to the arrival of
// its latest span at the backend (p50, p99).
type keptTraces struct {
	kept, whole int
	p50, p99    time.Duration
}

// keptByKind reads a recording sink's arrivals against the ground truth
// and the replay's acknowledgement times.
func keptByKind(arrivals map[pcommon.TraceID]harness.Arrival, truth map[pcommon.TraceID]plannedTrace, delivered map[pcommon.TraceID]time.Time) map[harness.Kind]keptTraces {
	latencies := map[harness.Kind][]time.Duration{}
	out := map[harness.Kind]keptTraces{}
	for id, a := range arrivals {
		t, ok := truth[id]
		if !ok {
			continue
		}
		k := out[t.kind]
		k.kept++
		if a.Spans >= t.spans {
			k.whole++
		}
		out[t.kind] = k
		if at, ok := delivered[id]; ok {
			latencies[t.kind] = append(latencies[t.kind], a.Last.Sub(at))
		}
	}
	for kind, ls := range latencies {
		slices.Sort(ls)
		k := out[kind]
		k.p50, k.p99 = ls[len(ls)/2], ls[min(len(ls)-1, len(ls)*99/100)]
		out[kind] = k
	}
	return out
}

// ceilingLoad pre-encodes the load every run replays: requests of 512
// spans (an SDK batch) of the generator's traces, each trace ID unique, so
// a gateway buffers and decides every trace once; and the ground truth of
// each trace (its kind and spans), to read what a gateway kept against.
func ceilingLoad(spans int, seed uint64) ([]harness.EncodedRequest, map[pcommon.TraceID]plannedTrace, error) {
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents = seed, 1
	gen.Traces = spans / ((gen.MinSpans + gen.MaxSpans) / 2)
	// The replay ignores send times but keeps their order: trace starts
	// laid out over ceilingPlanSpan, about a run's length, so a trace's
	// spans reach the gateway over about their planned spread. Spreads are
	// short (slow traces 1.3-2.5 x a 100ms threshold, SDK delays up to
	// 100ms), well inside ceilingDecisionWait even when a replay runs
	// slower than planned, so a gateway decides on whole traces and what
	// it keeps can be checked against the ground truth.
	gen.Rate = float64(gen.Traces) / ceilingPlanSpan.Seconds()
	gen.LatencyThreshold, gen.ExportDelay = ceilingLatencyThreshold, 100*time.Millisecond
	plans, err := harness.Plan(gen)
	if err != nil {
		return nil, nil, err
	}
	truth := make(map[pcommon.TraceID]plannedTrace, len(plans))
	for _, p := range plans {
		truth[p.ID] = plannedTrace{kind: p.Kind, spans: len(p.Spans)}
	}
	// Timestamps half an hour ahead, past the end of every run: each trace
	// starts after the process under test does, as live traffic would.
	// Traces older than a gateway are traces in flight when it joined,
	// which rebalance_guard keeps whole (its first ring is a change too):
	// with a pre-encoded load, all of them.
	reqs, err := harness.EncodeRequests(plans, time.Now().Add(30*time.Minute), 512)
	return reqs, truth, err
}

// plannedTrace is a replayed trace's ground truth.
type plannedTrace struct {
	kind  harness.Kind
	spans int
}

// measureTier runs the tier's process pinned to its CPUs, replays reqs
// into it and returns spans per CPU-second and per wall-second. Agents
// export to three null sinks (three gateways), gateways to one (the
// backend), which for a gateway records what arrives, read against truth.
// The process's CPU is read from the replay's start until the tier has
// finished with what it took (a gateway decides its last traces
// decision_wait later).
func measureTier(c tierConfig, load ceilingLoads, profile string) (tierRun, error) {
	reqs, truth := load.reqs, load.truth
	var run tierRun
	sinks := make([]*harness.NullSink, 1)
	if c.tier == "agent" {
		sinks = make([]*harness.NullSink, 3)
	}
	var endpoints []string
	var sinkOpts []grpc.ServerOption
	var replayOpts []grpc.DialOption
	if c.mtls && c.tier == "agent" {
		sinkOpts = append(sinkOpts, grpc.Creds(credentials.NewTLS(benchTLS.gatewayServer)))
	}
	if c.mtls && c.tier == "gateway" {
		replayOpts = append(replayOpts, grpc.WithTransportCredentials(credentials.NewTLS(benchTLS.agentClient)))
	}
	for i := range sinks {
		s, err := harness.StartNullSink(sinkOpts...)
		if err != nil {
			return run, err
		}
		defer s.Close()
		sinks[i] = s
		endpoints = append(endpoints, s.Endpoint())
	}
	dir, err := os.MkdirTemp("", "tailgate-ceiling-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	ports, err := harness.PickPorts()
	if err != nil {
		return run, err
	}
	env, args, err := ceilingSettings(c, ports, dir, endpoints)
	if err != nil {
		return run, err
	}
	p, err := startPinned(c.name, c.bin, args, c.cpus(), c.podMemory, ports, env, dir)
	if err != nil {
		return run, err
	}
	defer func() { _ = p.Stop(30 * time.Second) }()
	time.Sleep(time.Second)
	gateway := c.tier == "gateway"
	// A gateway's live heap is read through its pprof extension (the stock
	// configurations have one too), before the warm-up: the reading forces
	// a collection, after which the runtime returns the heap above its
	// lowered goal to the kernel, and the replay would have every page of
	// it faulted in again, which no gateway in service pays.
	var idleHeap uint64
	if gateway {
		if idleHeap, err = liveHeap(ports.Pprof); err != nil {
			return run, err
		}
	}
	if err := warmUp(c, load, ports, replayOpts...); err != nil {
		return run, err
	}
	var failedBefore float64 // by the warm-up
	if gateway {
		sinks[0].RecordArrivals()
		scrape, err := harness.ScrapeMetrics(ports.Telemetry)
		if err != nil {
			return run, err
		}
		failedBefore = scrape.Sum(harness.MetricExporterFailed)
	}

	before, err := p.Stats()
	if err != nil {
		return run, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	loop := c.tier == "agent"
	if loop {
		ctx, cancel = context.WithTimeout(ctx, agentReplayFor)
		defer cancel()
	}
	profiled := make(chan error, 1)
	if profile != "" {
		go func() { profiled <- captureCPUProfile(ports.Pprof, profile) }()
	} else {
		profiled <- nil
	}
	res, err := harness.Replay(ctx, fmt.Sprintf("127.0.0.1:%d", ports.OTLPGRPC), reqs, replayConcurrency, loop, replayOpts...)
	if err != nil {
		return run, err
	}
	if err := <-profiled; err != nil {
		return run, err
	}
	// The heap reading forces a collection, which a process in service
	// does not get: its CPU is left out.
	var readingHeap harness.ProcStats
	if gateway {
		start, err := p.Stats()
		if err != nil {
			return run, err
		}
		// What the buffered traces hold when the replay ends.
		if run.heapPerSpan, err = heapPerBufferedSpan(ports, idleHeap); err != nil {
			return run, err
		}
		end, err := p.Stats()
		if err != nil {
			return run, err
		}
		readingHeap = harness.ProcStats{CPU: end.CPU - start.CPU, System: end.System - start.System, MinorFaults: end.MinorFaults - start.MinorFaults}
	}
	// Let the tier finish what it accepted: exports drain, and a gateway
	// decides the traces it still buffers. A gateway at its ceiling may
	// decide its last traces later than that: it is read once its backend
	// has received nothing for two decision ticks.
	time.Sleep(ceilingDecisionWait + 2*time.Second)
	if gateway {
		if err := untilQuiet(sinks[0], 2*time.Second, 30*time.Second); err != nil {
			return run, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	after, err := p.Stats()
	if err != nil {
		return run, err
	}
	if gateway {
		scrape, err := harness.ScrapeMetrics(ports.Telemetry)
		if err != nil {
			return run, err
		}
		run.exportFailed = scrape.Sum(harness.MetricExporterFailed) - failedBefore
		run.kept = keptByKind(sinks[0].Arrivals(), truth, res.LastDelivered(reqs))
		run.sent = map[harness.Kind]int{}
		for _, t := range truth {
			run.sent[t.kind]++
		}
	}
	run.spans, run.failed, run.retried, run.wall = res.Spans, res.Failed, res.Retried, res.Elapsed
	run.cpu = after.CPU - before.CPU - readingHeap.CPU
	run.system = after.System - before.System - readingHeap.System
	run.minorFaults = after.MinorFaults - before.MinorFaults - readingHeap.MinorFaults
	run.peakRSS = after.PeakRSS
	run.perCPUSec = float64(run.spans) / run.cpu.Seconds()
	run.perWallSec = float64(run.spans) / run.wall.Seconds()
	if res.Failed > 0 {
		return run, fmt.Errorf("%s refused %d requests at saturation (the measurement needs it to take all)\n%s", c.name, res.Failed, p.LogTail(20))
	}
	return run, nil
}

// untilQuiet returns once sink has taken no request for quiet, or an
// error after limit.
func untilQuiet(sink *harness.NullSink, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last, since := sink.Requests(), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			return fmt.Errorf("the backend still received requests %s after the replay", limit)
		}
		time.Sleep(100 * time.Millisecond)
		if n := sink.Requests(); n != last {
			last, since = n, time.Now()
		}
	}
	return nil
}

// ceilingLoads is what a run replays: the measured requests and their
// traces' ground truth, and the requests of other traces a gateway is
// warmed up with.
type ceilingLoads struct {
	reqs, warmup []harness.EncodedRequest
	truth        map[pcommon.TraceID]plannedTrace
}

// newCeilingLoads encodes the measured load of spans spans and the warm-up
// load of ceilingWarmupSpans, each of traces of their own.
func newCeilingLoads(spans int) (ceilingLoads, error) {
	reqs, truth, err := ceilingLoad(spans, 77)
	if err != nil {
		return ceilingLoads{}, err
	}
	warmup, _, err := ceilingLoad(ceilingWarmupSpans, 78)
	return ceilingLoads{reqs: reqs, warmup: warmup, truth: truth}, err
}

// warmUp gives the process under test the measured load's work before its
// run is measured: an agent the same requests for agentWarmupFor, a
// gateway the warm-up load's traces once, decided and exported before the
// run starts. A process that has run for a while has its heap mapped at
// the size this rate grows it to; a fresh one first has the kernel fault
// in every page of it (about 1 GB for a gateway here, a quarter of a cold
// run's CPU as system time, more for a larger GOGC), which no gateway in
// service pays per span. opts dial it as the measured replay does (mTLS).
func warmUp(c tierConfig, load ceilingLoads, ports harness.NodePorts, opts ...grpc.DialOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reqs, loop := load.warmup, false
	if c.tier == "agent" {
		ctx, cancel = context.WithTimeout(ctx, agentWarmupFor)
		defer cancel()
		reqs, loop = load.reqs, true
	}
	res, err := harness.Replay(ctx, fmt.Sprintf("127.0.0.1:%d", ports.OTLPGRPC), reqs, replayConcurrency, loop, opts...)
	if err != nil {
		return fmt.Errorf("%s: warming up: %w", c.name, err)
	}
	if res.Failed > 0 {
		return fmt.Errorf("%s refused %d requests while warming up", c.name, res.Failed)
	}
	// Until the gateway has decided and exported the warm-up's traces.
	if c.tier == "gateway" {
		time.Sleep(ceilingDecisionWait + 2*time.Second)
	}
	return nil
}

// heapCell is the runs' heap per buffered span, n/a where it was not read.
func heapCell(rs []tierRun) string {
	m, lo, hi := stats(rs, func(r tierRun) float64 { return r.heapPerSpan })
	if m == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f (%.0f-%.0f) B", m, lo, hi)
}

// liveHeap is the process's live heap: HeapAlloc right after a collection
// its pprof extension forces.
func liveHeap(pprofPort int) (uint64, error) {
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1&debug=1", pprofPort))
	if err != nil {
		return 0, fmt.Errorf("live heap: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("live heap: no HeapAlloc in the heap profile")
}

// heapPerBufferedSpan is the live heap above idleHeap per span
// tail_sampling buffers (traces on memory x the generator's mean spans per
// trace): docs/sizing.md's method, read once.
func heapPerBufferedSpan(ports harness.NodePorts, idleHeap uint64) (float64, error) {
	heap, err := liveHeap(ports.Pprof)
	if err != nil {
		return 0, err
	}
	scrape, err := harness.ScrapeMetrics(ports.Telemetry)
	if err != nil {
		return 0, err
	}
	gen := harness.DefaultGeneratorConfig()
	spans := scrape.Sum("otelcol_processor_tail_sampling_sampling_traces_on_memory") * float64(gen.MinSpans+gen.MaxSpans) / 2
	if spans == 0 {
		return 0, nil
	}
	return (float64(heap) - float64(idleHeap)) / spans, nil
}

// ceilingSettings are the environment and the arguments of a run of c on
// ports, exporting to endpoints: for tailgate's profiles their variables
// and --set flags (ceilingSet), for the stock configs their STOCK_*
// variables.
func ceilingSettings(c tierConfig, ports harness.NodePorts, dir string, endpoints []string) (map[string]string, []string, error) {
	env := ceilingEnv(c, ports, endpoints)
	args := append([]string{"--config", c.config}, c.args...)
	if c.stock {
		return env, args, nil
	}
	maps.Copy(env, ports.Env(c.tier))
	if c.mtls {
		args = append(args, benchTLS.args(c.tier)...)
	}
	set, err := ceilingSet(c, dir, endpoints)
	if err != nil {
		return nil, nil, err
	}
	return env, append(args, harness.ConfigFlags(nil, append(ports.Set(c.tier), set...)...)...), nil
}

// ceilingSet are the --set flags of a tailgate configuration c: its first
// backend at endpoints[0], the bench's decision_wait and slow threshold
// (the shipped policies with that threshold), and c's own.
func ceilingSet(c tierConfig, dir string, endpoints []string) ([]string, error) {
	if c.tier == "agent" {
		return append([]string{harness.AgentPassthrough}, c.set...), nil
	}
	policies, err := shippedPoliciesWithThreshold(ceilingLatencyThreshold)
	if err != nil {
		return nil, err
	}
	set := append(harness.SinkSet(endpoints[0], filepath.Join(dir, "queue")),
		"service::pipelines::metrics/spanmetrics::exporters=[prometheus]",
		"processors::tail_sampling::decision_wait="+ceilingDecisionWait.String(),
		"processors::tail_sampling::policies="+policies)
	return append(set, c.set...), nil
}

// shippedPoliciesWithThreshold is the gateway profile's policies with the
// latency policy's threshold at threshold, as a --set value (JSON, which
// is YAML).
func shippedPoliciesWithThreshold(threshold time.Duration) (string, error) {
	raw, err := profile.Raw("gateway")
	if err != nil {
		return "", err
	}
	policies, _ := profile.Get(raw, "processors", "tail_sampling", "policies").([]any)
	for _, p := range policies {
		if latency, ok := profile.Get(p, "latency").(map[string]any); ok {
			latency["threshold_ms"] = threshold.Milliseconds()
		}
	}
	out, err := json.Marshal(policies)
	return string(out), err
}

// ceilingEnv is the environment of a run of c on ports: the variables of
// tailgate's profiles and of the stock configs, exporting to endpoints.
func ceilingEnv(c tierConfig, ports harness.NodePorts, endpoints []string) map[string]string {
	env := map[string]string{
		// tailgate's profiles
		"TAILGATE_GATEWAY_RESOLVER":         "static",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[" + strings.Join(endpoints, ", ") + "]",
		// the stock configs (stock/*.yaml)
		"STOCK_OTLP_ENDPOINT":        fmt.Sprintf("127.0.0.1:%d", ports.OTLPGRPC),
		"STOCK_HEALTH_ENDPOINT":      fmt.Sprintf("127.0.0.1:%d", ports.Health),
		"STOCK_PPROF_ENDPOINT":       fmt.Sprintf("127.0.0.1:%d", ports.Pprof),
		"STOCK_TELEMETRY_PORT":       strconv.Itoa(ports.Telemetry),
		"STOCK_PROMETHEUS":           fmt.Sprintf("127.0.0.1:%d", ports.Prometheus),
		"STOCK_GATEWAYS":             "[" + strings.Join(endpoints, ", ") + "]",
		"STOCK_BACKEND_ENDPOINT":     endpoints[0],
		"STOCK_DECISION_WAIT":        ceilingDecisionWait.String(),
		"STOCK_SAMPLING_PERCENTAGE":  "10",
		"STOCK_LATENCY_THRESHOLD_MS": strconv.Itoa(int(ceilingLatencyThreshold.Milliseconds())),
	}
	if c.tier == "gateway" {
		// The gateway alone is its whole ring: its guard follows itself.
		env["TAILGATE_GATEWAY_STATIC_HOSTNAMES"] = fmt.Sprintf("[127.0.0.1:%d]", ports.OTLPGRPC)
	}
	for k, v := range c.env {
		env[k] = v
	}
	return env
}

// benchTLS is the certificates of the mTLS rows, made once per bench run.
var benchTLS *tierTLS

// tierTLS is a CA, a gateway certificate (also the agents' null sinks')
// and an agent certificate, in Secret-shaped directories, and the TLS
// configurations of the bench's own ends.
type tierTLS struct {
	gatewayDir, agentDir string
	gatewayServer        *tls.Config // the agents' null sinks: require the agent's certificate
	agentClient          *tls.Config // the replay into a gateway: presents it
}

func newTierTLS(dir string) (*tierTLS, error) {
	ca, err := harness.NewCA("tailgate-bench-ca")
	if err != nil {
		return nil, err
	}
	gateway, err := ca.Issue("tailgate-gateway", time.Now().Add(24*time.Hour), harness.GatewayServerName)
	if err != nil {
		return nil, err
	}
	agent, err := ca.Issue("tailgate-agent", time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	t := &tierTLS{gatewayDir: filepath.Join(dir, "gateway-tls"), agentDir: filepath.Join(dir, "agent-tls")}
	if err := harness.WriteSecretDir(t.gatewayDir, ca.SecretData(gateway)); err != nil {
		return nil, err
	}
	if err := harness.WriteSecretDir(t.agentDir, ca.SecretData(agent)); err != nil {
		return nil, err
	}
	if t.gatewayServer, err = harness.ServerTLS(gateway, ca); err != nil {
		return nil, err
	}
	if t.agentClient, err = harness.ClientTLS(ca, &agent, harness.GatewayServerName); err != nil {
		return nil, err
	}
	return t, nil
}

// args turn mutual TLS on for a tier, with the shipped reload interval:
// the shipped overlay, and where this bench's certificates are.
func (t *tierTLS) args(tier string) []string {
	set := harness.AgentMTLSSet(t.agentDir, time.Minute)
	if tier == "gateway" {
		set = harness.GatewayMTLSSet(t.gatewayDir, time.Minute)
	}
	return harness.ConfigFlags([]string{harness.MTLSOverlay(tier)}, set...)
}

// startAndIdle starts a gateway config idleRuns times (nothing sent to
// it): the median time from exec to its first healthy answer, and its RSS
// after idleFor.
func startAndIdle(c tierConfig) (startup time.Duration, rss int64, err error) {
	sink, err := harness.StartNullSink()
	if err != nil {
		return 0, 0, err
	}
	defer sink.Close()
	var times []time.Duration
	var rsss []int64
	for range idleRuns {
		dir, err := os.MkdirTemp("", "tailgate-idle-")
		if err != nil {
			return 0, 0, err
		}
		ports, err := harness.PickPorts()
		if err != nil {
			return 0, 0, err
		}
		env, args, err := ceilingSettings(c, ports, dir, []string{sink.Endpoint()})
		if err != nil {
			os.RemoveAll(dir)
			return 0, 0, err
		}
		start := time.Now()
		p, err := startPinned(c.name, c.bin, args, c.cpus(), c.podMemory, ports, env, dir)
		if err != nil {
			os.RemoveAll(dir)
			return 0, 0, err
		}
		times = append(times, time.Since(start))
		time.Sleep(idleFor)
		st, err := p.Stats()
		_ = p.Stop(30 * time.Second)
		os.RemoveAll(dir)
		if err != nil {
			return 0, 0, err
		}
		rsss = append(rsss, st.RSS)
	}
	slices.Sort(times)
	slices.Sort(rsss)
	return times[len(times)/2], rsss[len(rsss)/2], nil
}

// startPinned starts a collector with args pinned to cpus (a taskset list),
// on the given ports (set in args and env), and waits until it is healthy.
func startPinned(name, bin string, args []string, cpus string, memory int64, ports harness.NodePorts, env map[string]string, logDir string) (*harness.Process, error) {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return nil, fmt.Errorf("pinning the collector to a CPU: %w", err)
	}
	spec := harness.ProcessSpec{
		Name: name, Args: append([]string{"-c", cpus, bin}, args...), Env: env,
		HealthPort: ports.Health, LogDir: logDir, HealthPoll: 2 * time.Millisecond,
	}
	if memory > 0 {
		spec.Limits = &harness.Limits{MemoryBytes: memory}
	}
	p, err := harness.StartProcess(taskset, spec)
	if err != nil {
		return nil, err
	}
	if err := p.WaitHealthy(30 * time.Second); err != nil {
		_ = p.Stop(10 * time.Second)
		return nil, fmt.Errorf("%s: %w\n%s", name, err, p.LogTail(20))
	}
	return p, nil
}

// decodeFloor is the least a tier can spend per span: unmarshalling the
// same requests with pdata (for the agent, unmarshalling and marshalling
// them again), on this process alone, pinned like the collectors; spans
// per CPU-second, garbage collection included.
func decodeFloor(reqs []harness.EncodedRequest, remarshal bool) (float64, error) {
	var spans int64
	start := processCPU()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range reqs[:min(len(reqs), 200)] {
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(r.Body); err != nil {
				return 0, err
			}
			if remarshal {
				if _, err := req.MarshalProto(); err != nil {
					return 0, err
				}
			}
			spans += int64(r.Spans)
		}
	}
	return float64(spans) / (processCPU() - start).Seconds(), nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pinBench moves every thread of the bench process to benchCPU, away from
// the collector under test (threads started later inherit it).
func pinBench() error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(benchCPU), strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %w: %s", err, out)
	}
	return nil
}

// median and spread of a figure over runs.
func stats(runs []tierRun, f func(tierRun) float64) (med, lo, hi float64) {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	return xs[len(xs)/2], xs[0], xs[len(xs)-1]
}

// ceilingSpans is the load a gateway run replays once: ~6 s at the
// ceilings measured here, each trace unique.
const ceilingSpans = 600_000

// ceilingSection measures both tiers of tailgate and of the stock
// configuration on the baseline build, ceilingRuns times each, and the
// decode floors, and renders the report's section.
func ceilingSection(tailgate, baseline string, sel ceilingSelection, measureCompression bool) (string, error) {
	if err := pinBench(); err != nil {
		return "", err
	}
	fmt.Printf("== each tier at its ceiling: encoding %d spans\n", ceilingSpans)
	load, err := newCeilingLoads(ceilingSpans)
	if err != nil {
		return "", err
	}
	stockDir := filepath.Join(harness.RepoRoot(), "test", "cmd", "bench", "stock")
	// tailgate runs with the garbage-collection settings its manifests
	// give the shipped pods (GOGC, GOMEMLIMIT from the memory request).
	agentGC, err := k8srender.GCEnv("DaemonSet", 0)
	if err != nil {
		return "", err
	}
	gatewayGC, err := k8srender.GCEnv("Deployment", 0)
	if err != nil {
		return "", err
	}
	podMemory := map[string]int64{}
	for tier, kind := range map[string]string{"agent": "DaemonSet", "gateway": "Deployment"} {
		if podMemory[tier], err = k8srender.PodMemoryLimit(kind); err != nil {
			return "", err
		}
	}
	gatewayArgs := []string{harness.GatewayFeatureGates}
	configs := []tierConfig{
		{name: "tailgate agent", tier: "agent", bin: tailgate, config: harness.ProfilePath("agent"), env: agentGC},
		{name: "stock agent", tier: "agent", bin: baseline, config: filepath.Join(stockDir, "agent.yaml"), stock: true},
		{name: "tailgate gateway", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC},
		{name: "stock gateway", tier: "gateway", bin: baseline, config: filepath.Join(stockDir, "gateway.yaml"), stock: true},
		// What the manifests' GC settings buy: the same without them.
		{name: "tailgate gateway, Go's default GC", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, optional: true},
		// Garbage collection at the memory limit alone (GOGC off, the
		// manifests' GOMEMLIMIT): what more GOGC could buy at most.
		{name: "tailgate gateway, GOGC off", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: withEnv(gatewayGC, "GOGC", "off"), optional: true},
		// The runtime's memory headroom: GOMEMLIMIT and memory_limiter's
		// soft limit at 50% of the pod's limit (as shipped before 0.2.0,
		// the memory request at half the limit) instead of 75%, and freed heap
		// handed back with MADV_FREE, which the kernel reclaims only under
		// memory pressure, instead of MADV_DONTNEED, which makes the next
		// use of each page fault.
		{name: "tailgate gateway, GOMEMLIMIT 50%", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: withEnv(gatewayGC, "GOMEMLIMIT", strconv.FormatInt(podMemory["gateway"]/2, 10)), set: []string{"processors::memory_limiter::spike_limit_percentage=30"}},
		{name: "tailgate gateway, madvdontneed=0", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: withEnv(gatewayGC, "GODEBUG", "madvdontneed=0"), optional: true},
		// What recordpolicy (kept spans name their policy) costs.
		{name: "tailgate gateway, no recordpolicy", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), env: gatewayGC, optional: true},
		// What mutual TLS between the tiers costs each side (docs/security.md).
		{name: "tailgate agent, mTLS", tier: "agent", bin: tailgate, config: harness.ProfilePath("agent"), env: agentGC, mtls: true, optional: true},
		{name: "tailgate gateway, mTLS", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, mtls: true, optional: true},
		// tail_sampling's own levers (docs/policies.md, "Gateway levers"): its event
		// loops (num_shards, 2 as shipped) on one CPU and on two, and
		// deciding at ingest.
		{name: "tailgate gateway, num_shards 1", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, set: []string{"processors::tail_sampling::num_shards=1"}},
		{name: "tailgate gateway, 2 CPUs", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, twoCPUs: true},
		{name: "tailgate gateway, 2 CPUs, num_shards 1", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, set: []string{"processors::tail_sampling::num_shards=1"}, twoCPUs: true},
		{name: "tailgate gateway, span-ingest", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, set: []string{"processors::tail_sampling::sampling_strategy=span-ingest"}},
		// RED by request (configs/examples/red-by-request.yaml): what the
		// HTTP and RPC method and status code dimensions cost the profile.
		{name: "tailgate gateway, span_metrics request dimensions", tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"),
			args: append(slices.Clone(gatewayArgs), "--config", filepath.Join(harness.RepoRoot(), "configs", "examples", "red-by-request.yaml")), env: gatewayGC},
	}
	// The RED metrics' settings (docs/benchmarks.md, "The RED metrics'
	// cost"): each of the gateway profile's span_metrics settings against
	// upstream's default, one at a time, and all of them at once.
	for _, v := range spanMetricsVariants {
		configs = append(configs, tierConfig{name: "tailgate gateway, span_metrics " + v.name, tier: "gateway", bin: tailgate, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC, set: v.set, optional: true})
	}
	// The binary built without its profile (cmd/tailgate/default.pgo), in
	// the same run: what the profile-guided build buys each tier. Built
	// below, once the selection keeps one of them.
	if _, err := os.Stat(pgoFile()); err == nil {
		configs = append(configs,
			tierConfig{name: "tailgate agent, no PGO", tier: "agent", bin: withoutPGO, config: harness.ProfilePath("agent"), env: agentGC},
			tierConfig{name: "tailgate gateway, no PGO", tier: "gateway", bin: withoutPGO, config: harness.ProfilePath("gateway"), args: gatewayArgs, env: gatewayGC},
		)
	}
	// -extra configurations run with the shipped pods' GC settings too,
	// unless they set their own.
	for _, c := range sel.extra {
		if _, own := c.env["GOGC"]; own {
			continue
		}
		gc := agentGC
		if c.tier == "gateway" {
			gc = gatewayGC
		}
		for k, v := range gc {
			if _, set := c.env[k]; !set {
				c.env[k] = v
			}
		}
	}
	configs = sel.apply(configs)
	// tailgate's tiers run in their pod's memory, extras included.
	for i := range configs {
		if !configs[i].stock {
			configs[i].podMemory = podMemory[configs[i].tier]
		}
	}
	if slices.ContainsFunc(configs, func(c tierConfig) bool { return c.bin == withoutPGO }) {
		buildDir, err := os.MkdirTemp("", "tailgate-bench-build-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(buildDir)
		noPGO, err := buildWithoutPGO(buildDir)
		if err != nil {
			return "", err
		}
		for i := range configs {
			if configs[i].bin == withoutPGO {
				configs[i].bin = noPGO
			}
		}
	}
	tlsDir, err := os.MkdirTemp("", "tailgate-bench-tls-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tlsDir)
	if benchTLS, err = newTierTLS(tlsDir); err != nil {
		return "", err
	}
	runs := map[string][]tierRun{}
	for i := range ceilingRuns {
		for _, c := range configs {
			r, err := measureTier(c, load, sel.profileFile(c, i))
			if err != nil {
				return "", err
			}
			fmt.Printf("  run %d %-27s %8.0f spans/CPU-s %8.0f spans/s  (%d spans, CPU %s of which system %s, %.2f minor faults per 1k spans, wall %s, %d refusals sent again)\n",
				i+1, c.name, r.perCPUSec, r.perWallSec, r.spans, r.cpu.Round(time.Millisecond), r.system.Round(time.Millisecond), float64(r.minorFaults)*1000/float64(r.spans), r.wall.Round(time.Millisecond), r.retried)
			runs[c.name] = append(runs[c.name], r)
		}
	}
	// Where each shipped tier's CPU goes, from runs of their own (kept in
	// -cpuprofile's directory when given).
	profDir := sel.profDir
	if profDir == "" {
		if profDir, err = os.MkdirTemp("", "tailgate-bench-profiles-"); err != nil {
			return "", err
		}
		defer os.RemoveAll(profDir)
	}
	profiles, err := profileTiers(configs, load, profDir)
	if err != nil {
		return "", err
	}
	breakdowns := map[string]tierBreakdown{}
	for name, files := range profiles {
		parts, runtime, err := breakdown(files)
		if err != nil {
			return "", err
		}
		breakdowns[name] = tierBreakdown{parts: parts, runtime: runtime}
	}
	if sel.pgoOut != "" {
		if err := writePGO(profiles, sel.pgoOut); err != nil {
			return "", err
		}
		fmt.Printf("  wrote %s from %d profiles\n", sel.pgoOut, len(profiles[profiledTiers[0]])+len(profiles[profiledTiers[1]]))
	}
	idle := map[string]idleRun{}
	for _, c := range configs {
		if c.tier != "gateway" {
			continue
		}
		startup, rss, err := startAndIdle(c)
		if err != nil {
			return "", err
		}
		fmt.Printf("  %-27s start to healthy %s, idle RSS %.1f MiB (medians of %d)\n", c.name, startup.Round(time.Millisecond), float64(rss)/(1<<20), idleRuns)
		idle[c.name] = idleRun{startup: startup, rss: rss}
	}
	floors := map[string][]tierRun{}
	for range ceilingRuns {
		for _, f := range []struct {
			name      string
			remarshal bool
		}{{"gateway floor", false}, {"agent floor", true}} {
			v, err := decodeFloor(load.reqs, f.remarshal)
			if err != nil {
				return "", err
			}
			floors[f.name] = append(floors[f.name], tierRun{perCPUSec: v})
		}
	}
	if sel.partial() {
		// A comparison of chosen configurations: the table, without the
		// goals (their references may not have run) or the compression runs.
		return renderCeiling(configs, runs, floors, idle) + renderBreakdown(breakdowns), nil
	}
	if !measureCompression {
		return renderCeiling(configs, runs, floors, idle) + renderBreakdown(breakdowns), nil
	}
	fmt.Println("== compression between the tiers")
	compression, err := compressionSection(tailgate, load.reqs)
	if err != nil {
		return "", err
	}
	return renderCeiling(configs, runs, floors, idle) + renderBreakdown(breakdowns) + compression, nil
}

// idleRun is a gateway config's start and idle footprint.
type idleRun struct {
	startup time.Duration
	rss     int64
}

func renderCeiling(configs []tierConfig, runs, floors map[string][]tierRun, idle map[string]idleRun) string {
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	perCPU := func(r tierRun) float64 { return r.perCPUSec }
	perWall := func(r tierRun) float64 { return r.perWallSec }
	w("## Each tier at its ceiling\n\n")
	w("Method: %d-span OTLP requests of the generator's traces, with the attributes an instrumented service's spans carry once an agent has added its pod's (18 on each resource, 8-10 on each span: test/harness putInstrumentationAttributes), encoded before the run, replayed over gRPC by a lean sender with %d in flight, as fast as the process under test takes them (a request it refuses, as memory_limiter does at the pod's memory bound, is sent again 50 ms later, as senders retry; the CPU the refusals cost stays in the run). The process runs pinned to CPU %d (`taskset`); the sender, the null sinks it exports to (three for an agent, one backend for a gateway) and everything else of the bench run on CPU %d. Each run first warms the process up, as one that has been in service is: an agent takes the load for %s, a gateway a load of %d other traces' spans, decided and exported before the measurement starts (a fresh process first has the kernel fault in every page its heap grows to, and collects often while its heap is small; that cost is not per span). Then an agent run replays for %s; a gateway run replays %d spans once, each trace unique (decision_wait %s, read until its last decisions are exported). CPU is the process's own (/proc, user and system), from the replay's start until it has finished, less the collection a gateway's heap reading forces (below). %d runs each, interleaved; median (min-max).\n\n",
		512, replayConcurrency, collectorCPU, benchCPU, agentWarmupFor, ceilingWarmupSpans, agentReplayFor, ceilingSpans, ceilingDecisionWait, ceilingRuns)
	w("The stock configuration is what a user deploys from upstream's docs for this architecture (test/cmd/bench/stock: default gzip, queues and GOGC, no guard, span_metrics on a second pipeline from the receiver), run on the baseline build of the same upstream components. tailgate runs with the garbage-collection settings of its manifests (deploy/kubernetes/base: GOGC, and GOMEMLIMIT from the pod's memory request); \"Go's default GC\" is the same without them. The decode floor unmarshals the same requests with pdata (the agent's also marshals them again) in one goroutine of the bench process, garbage collection included.\n\n")
	w("| Tier | Config | CPUs | Spans per CPU-second | Spans per second | System share of CPU | Minor page faults per 1k spans | Peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	cell := func(rs []tierRun, f func(tierRun) float64) string {
		m, lo, hi := stats(rs, f)
		return fmt.Sprintf("%.0f (%.0f-%.0f)", m, lo, hi)
	}
	for _, c := range configs {
		system, _, _ := stats(runs[c.name], func(r tierRun) float64 { return r.system.Seconds() / r.cpu.Seconds() })
		faults, _, _ := stats(runs[c.name], func(r tierRun) float64 { return float64(r.minorFaults) * 1000 / float64(r.spans) })
		peak, _, _ := stats(runs[c.name], func(r tierRun) float64 { return float64(r.peakRSS) / (1 << 20) })
		w("| %s | %s | %d | %s | %s | %.0f%% | %.0f | %.0f MiB |\n", c.tier, c.name, len(strings.Split(c.cpus(), ",")), cell(runs[c.name], perCPU), cell(runs[c.name], perWall), system*100, faults, peak)
	}
	for _, f := range []string{"agent floor", "gateway floor"} {
		w("| %s | decode floor | 1 | %s | | | | |\n", strings.Fields(f)[0], cell(floors[f], perCPU))
	}
	w("\nWhat each gateway run delivered to its backend (the null sink decodes what it receives): of the error and slow traces, how many arrived whole (every span), of the others how many were kept (the probabilistic policy keeps 10%%); the time from the gateway's acknowledgement of the request holding a kept trace's last span to the arrival of its latest span at the backend, p50 / p99; the gateway's heap per span tail_sampling buffers when the replay ends (live heap after a forced collection, less the same before the warm-up, over traces on memory x 21.5 mean spans: docs/sizing.md's method, but for the warm-up in between, whose decided traces leave their IDs in tail_sampling's decision caches); and the spans its exporter gave up on (otelcol_exporter_send_failed_spans): the null sink takes requests of up to gRPC's default 4 MiB, as Jaeger's and Tempo's intake do, and refuses a larger one whole. Medians of the runs' figures (min-max).\n\n")
	w("| Config | Error: whole of sent | Error: p50 / p99 to backend | Slow: whole of sent | Slow: p50 / p99 | Probabilistic: kept | Probabilistic: p50 / p99 | Heap per buffered span | Spans the exporter gave up on |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range configs {
		rs := runs[c.name]
		if c.tier != "gateway" || len(rs) == 0 || rs[0].kept == nil {
			continue
		}
		kept := func(kind harness.Kind, f func(keptTraces) float64) string {
			m, lo, hi := stats(rs, func(r tierRun) float64 { return f(r.kept[kind]) })
			return fmt.Sprintf("%.0f (%.0f-%.0f)", m, lo, hi)
		}
		latency := func(kind harness.Kind) string {
			p50, _, _ := stats(rs, func(r tierRun) float64 { return r.kept[kind].p50.Seconds() })
			p99, lo, hi := stats(rs, func(r tierRun) float64 { return r.kept[kind].p99.Seconds() })
			return fmt.Sprintf("%.2f s / %.2f s (%.2f-%.2f)", p50, p99, lo, hi)
		}
		sent := func(kind harness.Kind) int { return rs[0].sent[kind] }
		w("| %s | %s of %d | %s | %s of %d | %s | %s | %s | %s | %s |\n", c.name,
			kept(harness.Error, func(k keptTraces) float64 { return float64(k.whole) }), sent(harness.Error), latency(harness.Error),
			kept(harness.Slow, func(k keptTraces) float64 { return float64(k.whole) }), sent(harness.Slow), latency(harness.Slow),
			kept(harness.Normal, func(k keptTraces) float64 { return float64(k.kept) }), latency(harness.Normal),
			heapCell(rs), cell(rs, func(r tierRun) float64 { return r.exportFailed }))
	}
	w("\nEach gateway config started %d times, nothing sent to it, pinned like the runs above: time from exec to its first healthy answer from health_check (asked every 2ms), and its RSS %s later; medians.\n\n", idleRuns, idleFor)
	w("| Config | Start to healthy | Idle RSS |\n|---|---|---|\n")
	for _, c := range configs {
		if r, ok := idle[c.name]; ok {
			w("| %s | %d ms | %.1f MiB |\n", c.name, r.startup.Milliseconds(), float64(r.rss)/(1<<20))
		}
	}
	med := func(name string, m map[string][]tierRun) float64 { v, _, _ := stats(m[name], perCPU); return v }
	w("\nGoals (medians):\n\n| Goal | Figure | Met |\n|---|---|---|\n")
	goal := func(name string, v, bound float64, atLeast bool) {
		met := v >= bound
		if !atLeast {
			met = v <= bound
		}
		w("| %s | %.2f | %v |\n", name, v, met)
	}
	if runs["tailgate gateway"] == nil || runs["stock gateway"] == nil || runs["tailgate agent"] == nil || runs["stock agent"] == nil {
		return sb.String()
	}
	goal("gateway spans per CPU-second vs stock >= 1.3", med("tailgate gateway", runs)/med("stock gateway", runs), 1.3, true)
	goal("agent spans per CPU-second vs stock >= 2", med("tailgate agent", runs)/med("stock agent", runs), 2, true)
	if runs["tailgate gateway, no PGO"] != nil {
		goal("gateway spans per CPU-second, PGO vs without >= 1.05", med("tailgate gateway", runs)/med("tailgate gateway, no PGO", runs), 1.05, true)
		goal("agent spans per CPU-second, PGO vs without >= 1.05", med("tailgate agent", runs)/med("tailgate agent, no PGO", runs), 1.05, true)
	}
	goal("gateway CPU per span vs its decode floor <= 2.5", med("gateway floor", floors)/med("tailgate gateway", runs), 2.5, false)
	goal("gateway idle RSS, MiB <= 60", float64(idle["tailgate gateway"].rss)/(1<<20), 60, false)
	goal("gateway start to healthy vs stock <= 1.1", float64(idle["tailgate gateway"].startup)/float64(idle["stock gateway"].startup), 1.1, false)
	if two := runs["tailgate gateway, 2 CPUs"]; two != nil {
		wall := func(name string) float64 { v, _, _ := stats(runs[name], perWall); return v }
		goal("gateway spans per second at 2 CPUs vs 1 CPU >= 1.8", wall("tailgate gateway, 2 CPUs")/wall("tailgate gateway"), 1.8, true)
	}
	p99, _, _ := stats(runs["tailgate gateway"], func(r tierRun) float64 { return r.kept[harness.Error].p99.Seconds() })
	goal(fmt.Sprintf("gateway p99 time to backend of error traces, s <= decision_wait + 1 s tick (%s)", ceilingDecisionWait+time.Second), p99, (ceilingDecisionWait + time.Second).Seconds(), false)
	heap, _, _ := stats(runs["tailgate gateway"], func(r tierRun) float64 { return r.heapPerSpan })
	goal("gateway heap per buffered span, B <= 700 (docs/sizing.md: 677)", heap, 700, false)
	w("\n")
	return sb.String()
}

// withEnv is env with key set to value, env itself unchanged.
func withEnv(env map[string]string, key, value string) map[string]string {
	out := maps.Clone(env)
	out[key] = value
	return out
}
