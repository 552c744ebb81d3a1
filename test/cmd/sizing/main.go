// Command sizing is `make sizing`: it measures the gateway's memory and CPU
// constants on one gateway started from the shipped profile, under a held
// load, and writes them with the sizing method to docs/sizing.md.
//
// Memory is the live heap after a forced garbage collection (pprof's
// /debug/pprof/heap?gc=1, the profile's pprof extension), read several
// times while the load is held steady, not a slope over a ramp; RSS is
// reported beside it.
//
// It is a measurement, not a test: test/distribution checks the shipped
// defaults against the constants it writes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
	k8srender "github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sizing:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", filepath.Join(harness.RepoRoot(), "docs", "sizing.md"), "report file")
	rate := flag.Float64("rate", 1000, "traces/s held while measuring the trace buffer")
	hold := flag.Duration("hold", 40*time.Second, "how long the load is held")
	walkOnly := flag.Bool("walk", false, "only rewrite the 5M spans/s walk of -out from the committed figures (make sizing-walk)")
	flag.Parse()
	if *walkOnly {
		return writeWalk(*out)
	}
	bin, err := harness.BinaryPath()
	if err != nil {
		return err
	}
	var m measured
	if err := readDefaults(&m); err != nil {
		return err
	}
	fmt.Println("== idle gateway: what num_traces allocates up front (rebalance_guard's tracker, 3 slots per trace)")
	if err := measureIdle(bin, &m); err != nil {
		return err
	}
	fmt.Println("== trace buffer and CPU (guard on, as shipped)")
	if err := measureBuffer(bin, *rate, *hold, &m); err != nil {
		return err
	}
	fmt.Println("== decision caches")
	if m.cacheEntry, m.cacheTraces, err = measureRetained(bin); err != nil {
		return err
	}
	report := render(m, *rate, *hold)
	fmt.Print(report)
	if err := os.WriteFile(*out, []byte(report+ringSkewSection(*out)), 0o644); err != nil {
		return err
	}
	// The walk reads the constants just written.
	return writeWalk(*out)
}

// measured are the constants docs/sizing.md publishes.
type measured struct {
	idleHeap, idleRSS float64 // bytes, gateway idle (guard on) at the profile's num_traces
	idleBase          float64 // idle live heap extrapolated to num_traces 0
	idlePerNumTrace   float64 // idle live heap per unit of num_traces (allocated up front)
	bufferedSpans     float64 // median spans buffered while the load is held
	heapPerSpan       float64 // live heap per buffered span, bytes
	rssPerSpan        float64 // RSS per buffered span, bytes
	meanSpans         float64
	cpuPer10k         float64 // CPU seconds per 10k spans (one gateway, whole pipeline)
	cacheEntry        float64 // live heap per decision cache entry, bytes
	cacheTraces       int
	// The profile's defaults, for the worked example.
	numTraces, expectedRate, cacheSize float64
	// memory_limiter's soft limit, a share of the pod's memory limit
	// (limit_percentage - spike_limit_percentage), where the manifests
	// put GOMEMLIMIT.
	softShare          float64
	podMemory          int64 // the base's gateway memory limit, bytes
	heapSamples        int
	gomaxprocs, numCPU int
}

type gateway struct {
	proc  *harness.Process
	ports harness.NodePorts
}

// startGateway runs the shipped gateway profile alone, its guard following
// a static set of itself (so it tracks every trace and marks none), with
// extra collector --set flags.
func startGateway(bin string, guard bool, extra ...string) (*gateway, func(), error) {
	dir, err := os.MkdirTemp("", "tailgate-sizing-")
	if err != nil {
		return nil, nil, err
	}
	ports, err := harness.PickPorts()
	if err != nil {
		return nil, nil, err
	}
	sink, err := harness.NewSink()
	if err != nil {
		return nil, nil, err
	}
	env := ports.Env("gateway")
	env["TAILGATE_GATEWAY_RESOLVER"] = "static"
	env["TAILGATE_GATEWAY_STATIC_HOSTNAMES"] = fmt.Sprintf("[127.0.0.1:%d]", ports.OTLPGRPC)
	set := append(harness.SinkSet(sink.Endpoint(), filepath.Join(dir, "queue")), harness.GuardSet("static", guard))
	// The garbage-collection settings the manifests give the shipped pod:
	// the CPU and RSS constants are the shipped gateway's.
	gc, err := k8srender.GCEnv("Deployment", 0)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(env, gc)
	// In the shipped pod's memory, which memory_limiter reads.
	memory, err := k8srender.PodMemoryLimit("Deployment")
	if err != nil {
		return nil, nil, err
	}
	p, err := harness.StartProcess(bin, harness.ProcessSpec{
		Name: "gateway", Args: ports.Args("gateway", harness.ProfilePath("gateway"), nil, append(set, extra...)...), Env: env,
		HealthPort: ports.Health, LogDir: dir, Limits: &harness.Limits{MemoryBytes: memory},
	})
	if err != nil {
		sink.Close()
		return nil, nil, err
	}
	stop := func() { _ = p.Stop(30 * time.Second); sink.Close(); os.RemoveAll(dir) }
	if err := p.WaitHealthy(30 * time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	return &gateway{proc: p, ports: ports}, stop, nil
}

var heapAllocRe = regexp.MustCompile(`(?m)^# HeapAlloc = (\d+)`)

// liveHeap forces a garbage collection in the gateway and returns the heap
// still allocated after it.
func (g *gateway) liveHeap() (float64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1&debug=1", g.ports.Pprof))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := heapAllocRe.FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no HeapAlloc in the heap profile")
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func (g *gateway) tracesOnMemory() (float64, error) {
	s, err := harness.ScrapeMetrics(g.ports.Telemetry)
	if err != nil {
		return 0, err
	}
	return s.Sum("otelcol_processor_tail_sampling_sampling_traces_on_memory"), nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// measureBuffer holds rate traces/s of the e2e generator's traffic, its
// spans with an instrumented service's attributes (as the bench's), on one
// gateway for hold, and reads its live heap, RSS and buffered traces every
// 2s once the buffer is full (decision_wait plus a margin after the start).
func measureBuffer(bin string, rate float64, hold time.Duration, m *measured) error {
	g, stop, err := startGateway(bin, true)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(3 * time.Second)
	if m.idleHeap, err = g.liveHeap(); err != nil {
		return err
	}
	st, err := g.proc.Stats()
	if err != nil {
		return err
	}
	m.idleRSS = float64(st.RSS)

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 7, 1, rate, int(rate*hold.Seconds())
	plans, err := harness.Plan(gen)
	if err != nil {
		return err
	}
	var spans int
	for _, p := range plans {
		spans += len(p.Spans)
	}
	m.meanSpans = float64(spans) / float64(len(plans))

	cpuBefore := st.CPU
	done := make(chan struct{})
	var heaps, rss, buffered []float64
	go func() {
		defer close(done)
		const fill = 13 * time.Second // the profile's decision_wait (10s), its 1s tick, the export delay
		time.Sleep(fill)
		for deadline := time.Now().Add(hold - fill - 2*time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
			tr, err1 := g.tracesOnMemory()
			h, err2 := g.liveHeap()
			s, err3 := g.proc.Stats()
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			buffered, heaps, rss = append(buffered, tr*m.meanSpans), append(heaps, h), append(rss, float64(s.RSS))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), hold+time.Minute)
	defer cancel()
	sent, err := harness.SendWith(ctx, plans, harness.SendConfig{Targets: []string{fmt.Sprintf("127.0.0.1:%d", g.ports.OTLPGRPC)}, Instrumented: true})
	if err != nil {
		return err
	}
	<-done
	// Until everything sent is decided, for the CPU figure.
	time.Sleep(12 * time.Second)
	st, err = g.proc.Stats()
	if err != nil {
		return err
	}
	m.cpuPer10k = (st.CPU - cpuBefore).Seconds() / float64(sent.SpansSent) * 10_000
	m.bufferedSpans, m.heapSamples = median(buffered), len(heaps)
	if m.bufferedSpans == 0 {
		return fmt.Errorf("no spans buffered while the load was held")
	}
	// The decision caches grow during the hold too, one entry per decided
	// trace: about rate x hold entries of tens of bytes against the
	// buffer's hundreds of thousands of spans, so they are not subtracted.
	m.heapPerSpan = (median(heaps) - m.idleHeap) / m.bufferedSpans
	m.rssPerSpan = (median(rss) - m.idleRSS) / m.bufferedSpans
	fmt.Printf("buffered spans %.0f (median of %d), live heap %.0f MiB (idle %.0f), RSS %.0f MiB (idle %.0f), CPU %.3f s/10k spans\n",
		m.bufferedSpans, len(heaps), median(heaps)/(1<<20), m.idleHeap/(1<<20), median(rss)/(1<<20), m.idleRSS/(1<<20), m.cpuPer10k)
	return nil
}

// readDefaults reads the gateway profile's tail_sampling defaults as the
// binary resolves them.
func readDefaults(m *measured) error {
	prof, err := profile.Effective("gateway", nil)
	if err != nil {
		return err
	}
	ts := profile.Get(prof, "processors", "tail_sampling")
	for into, keys := range map[*float64][]string{
		&m.numTraces:    {"num_traces"},
		&m.expectedRate: {"expected_new_traces_per_sec"},
		&m.cacheSize:    {"decision_cache", "sampled_cache_size"},
	} {
		v, err := strconv.ParseFloat(fmt.Sprint(profile.Get(ts, keys...)), 64)
		if err != nil {
			return fmt.Errorf("tail_sampling %v: %w", keys, err)
		}
		*into = v
	}
	if m.softShare, err = softLimitShare(prof); err != nil {
		return err
	}
	m.podMemory, err = k8srender.PodMemoryLimit("Deployment")
	return err
}

// softLimitShare is memory_limiter's soft limit in the profile prof, a
// share of the pod's memory limit: limit_percentage -
// spike_limit_percentage, where the manifests put GOMEMLIMIT.
func softLimitShare(prof map[string]any) (float64, error) {
	ml := profile.Get(prof, "processors", "memory_limiter")
	var pct [2]float64
	for i, key := range []string{"limit_percentage", "spike_limit_percentage"} {
		v, err := strconv.ParseFloat(fmt.Sprint(profile.Get(ml, key)), 64)
		if err != nil {
			return 0, fmt.Errorf("memory_limiter %s: %w", key, err)
		}
		pct[i] = v
	}
	return (pct[0] - pct[1]) / 100, nil
}

// measureIdle reads the idle live heap at two num_traces: rebalance_guard
// allocates its tracker (max_traces = 3 x num_traces slots) up front.
func measureIdle(bin string, m *measured) error {
	const small, large = 10_000, 310_000
	heap := func(n int) (float64, error) {
		g, stop, err := startGateway(bin, true, "processors::tail_sampling::num_traces="+strconv.Itoa(n))
		if err != nil {
			return 0, err
		}
		defer stop()
		time.Sleep(3 * time.Second)
		return g.liveHeap()
	}
	hs, err := heap(small)
	if err != nil {
		return err
	}
	hl, err := heap(large)
	if err != nil {
		return err
	}
	m.idlePerNumTrace = (hl - hs) / (large - small)
	m.idleBase = hs - small*m.idlePerNumTrace
	fmt.Printf("idle live heap %.1f MiB at num_traces %d, %.1f MiB at %d: %.0f B per unit of num_traces, %.1f MiB at 0\n",
		hs/(1<<20), small, hl/(1<<20), large, m.idlePerNumTrace, m.idleBase/(1<<20))
	return nil
}

// measureRetained sends many one-span traces to a gateway with the guard
// off, waits until all are decided (nothing buffered), and returns the
// live heap they left behind per trace: one decision cache entry each.
func measureRetained(bin string) (perTrace float64, traces int, err error) {
	g, stop, err := startGateway(bin, false)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	time.Sleep(3 * time.Second)
	idle, err := g.liveHeap()
	if err != nil {
		return 0, 0, err
	}
	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 11, 1, 4000, 100_000
	gen.MinSpans, gen.MaxSpans, gen.ErrorRatio, gen.SlowRatio, gen.ExportDelay = 1, 1, 0, 0, 0
	plans, err := harness.Plan(gen)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := harness.SendWith(ctx, plans, harness.SendConfig{Targets: []string{fmt.Sprintf("127.0.0.1:%d", g.ports.OTLPGRPC)}, Instrumented: true}); err != nil {
		return 0, 0, err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		n, err := g.tracesOnMemory()
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("traces still buffered a minute after sending")
		}
	}
	after, err := g.liveHeap()
	if err != nil {
		return 0, 0, err
	}
	perTrace = (after - idle) / float64(len(plans))
	fmt.Printf("%d decided one-span traces left %.1f MiB of live heap: %.0f B each\n", len(plans), (after-idle)/(1<<20), perTrace)
	return perTrace, len(plans), nil
}

func render(m measured, rate float64, hold time.Duration) string {
	host, _ := os.Hostname()
	// The worked example: the shipped pod (1 CPU, the base's memory limit)
	// and the profile's defaults, P = 20.
	podSpans := 0.7 / m.cpuPer10k * 10_000
	podTraces := podSpans / 20
	mib := float64(m.podMemory) / (1 << 20)
	live := m.idleBase + m.numTraces*(m.idlePerNumTrace+20*m.heapPerSpan) + 2*m.cacheSize*m.cacheEntry
	return fmt.Sprintf(`# Sizing the gateways

Generated by `+"`make sizing`"+` (test/cmd/sizing) on %s; do not edit by hand.
test/k8s/manifests (TestShippedDefaultsFitTheGatewayPod) checks the shipped
pod and profile defaults against the constants below.

## Measured constants

One gateway from configs/gateway.yaml (rebalance_guard on, static set of
itself) with the manifests' GOGC and GOMEMLIMIT for the shipped pod, the
e2e generator's traffic sent to it directly, its spans with the attributes
of an instrumented HTTP or gRPC server after an agent (18 on the resource,
8-10 on the span, as the bench's); %s, %d cores, host %q.

<!-- constants: machine-read by test/harness.SizingConstants; one "| name | value |" per row -->
| Constant | Value |
|---|---|
| heap_per_buffered_span_bytes | %.0f |
| rss_per_buffered_span_bytes | %.0f |
| decision_cache_entry_bytes | %.0f |
| idle_heap_bytes | %.0f |
| idle_heap_per_num_trace_bytes | %.0f |
| idle_rss_bytes | %.0f |
| cpu_seconds_per_10k_spans | %.3f |
<!-- end constants -->

- **Buffered span**: %.0f traces/s (mean %.1f spans per trace) held for %s; live
  heap after a forced GC minus the idle gateway's, divided by the spans
  tail_sampling held (traces on memory x mean spans), median of %d readings
  once decision_wait had filled the buffer (%.0f spans buffered). It covers
  everything a buffered span costs along the gateway pipeline (receiver,
  span_metrics, rebalance_guard, tail_sampling's copy).
- **Decision cache entry**: %d one-span traces decided with the guard off;
  the live heap they leave once none is buffered, per trace (each decided
  trace is one entry of the sampled or the non-sampled cache).
- **Idle heap**: an idle gateway's live heap at num_traces 10000 and 310000,
  extrapolated to 0 (idle_heap) and its growth per unit of num_traces
  (rebalance_guard allocates its tracker, max_traces = 3 x num_traces
  slots, up front); the idle RSS is at the profile's default.
- **CPU**: the gateway's user+system time over the held load (including its
  decisions and exports), per 10k spans received; the generator runs on the
  same cores. `+"`make bench`"+` measures throughput at saturation.

## From traffic to gateways

For a cluster receiving S spans/s in traces of P spans on average, with
decision_wait W (tail_sampling's) and one gateway pod of C CPUs and M
bytes of memory limit:

1. **Replicas for CPU**: S x cpu_seconds_per_10k_spans / 10k / (C x 0.7),
   rounded up (70%%: the HPA's CPU target, headroom for a rebalance).
2. **Traces per gateway** T = S / P / replicas; **num_traces** >= T x (W +
   1 s) x 1.5 (tail_sampling evicts the oldest undecided trace beyond it).
3. **Memory** of one gateway, to keep under memory_limiter's soft limit
   (M x (limit_percentage - spike_limit_percentage) = %.0f%% of M as shipped,
   where the manifests put GOMEMLIMIT: the base's memory request, the
   chart's share of the limit):
   live heap = idle_heap + num_traces x (idle_heap_per_num_trace + P x
   heap_per_buffered_span) + (sampled_cache_size + non_sampled_cache_size)
   x decision_cache_entry, at most half of that soft limit. GOMEMLIMIT
   there makes the runtime collect before garbage reaches it, whatever
   GOGC (300 as shipped) would allow; with the live heap at half of it, a
   collection still frees as much as one under the default GOGC 100
   does, so the garbage collector's CPU stays what the constants measured.
   The decision caches remember decisions for late spans; upstream advises
   at least 10 x num_traces each.
4. More memory than that buys nothing: add replicas instead (each also
   spreads the trace IDs a membership change moves).

## Worked example: the shipped defaults

One gateway pod of 1 CPU and %.0f MiB (deploy/kubernetes/base), P = 20,
W = 10 s, with the constants above:

- at 70%% CPU it takes %.0f spans/s, %.0f traces/s;
- num_traces >= %.0f x 11 s x 1.5 = %.0f: the profile ships %.0f, and
  expected_new_traces_per_sec %.0f;
- decision caches of %.0f each (10 x num_traces);
- live heap with every buffer full: %.0f MiB, under %.0f MiB (half of %.0f%% of
  %.0f MiB); memory_limiter refuses above %.0f%% (%.0f MiB of heap), GOMEMLIMIT
  is the same %.0f MiB, the memory request.

For 100k spans/s in traces of 20 spans: %d gateways of this size (the HPA's
minimum should hold the steady load; see docs/scaling.md).
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU(), host,
		m.heapPerSpan, m.rssPerSpan, m.cacheEntry, m.idleBase, m.idlePerNumTrace, m.idleRSS, m.cpuPer10k,
		rate, m.meanSpans, hold, m.heapSamples, m.bufferedSpans, m.cacheTraces,
		100*m.softShare, mib,
		podSpans, podTraces, podTraces, podTraces*11*1.5, m.numTraces, m.expectedRate, m.cacheSize,
		live/(1<<20), m.softShare*mib/2, 100*m.softShare, mib, 100*m.softShare, m.softShare*mib, m.softShare*mib,
		int(math.Ceil(100_000/podSpans)))
}

// ringSkewSection is the section of the page at path that `make ring-skew`
// writes (rebalanceguardprocessor/internal/ringskew: the ring's hottest
// gateway against the mean), kept as it is: it is computed, not measured.
func ringSkewSection(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if section := docs.Marked(string(data), ringSkewBegin, ringSkewEnd); section != "" {
		return "\n" + section
	}
	return ""
}

// The markers of the ring skew section (rebalanceguardprocessor's
// internal/ringskew writes them).
const ringSkewBegin, ringSkewEnd = "<!-- ring skew:", "<!-- ring skew end -->"
