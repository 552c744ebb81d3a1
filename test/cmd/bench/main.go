// Command bench is `make bench`: it measures tailgate against a baseline
// built by ocb from the same upstream components and versions, in the same
// run, and writes the figures and method to docs/benchmarks.md.
//
// It is a benchmark, not a test: it asserts nothing about time.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	gomaxprocs   int   // at start: pinning the bench to one CPU later lowers it
	steps        []int // offered spans/s
	stepDuration time.Duration
	decisionWait time.Duration
	out          string
}

func run() error {
	var (
		stepsFlag = flag.String("steps", "20000,40000,60000,80000,100000", "offered load steps, spans/s")
		stepDur   = flag.Duration("step-duration", 10*time.Second, "traffic per step")
		dw        = flag.Duration("decision-wait", 5*time.Second, "gateways' decision_wait")
		out       = flag.String("out", filepath.Join(harness.RepoRoot(), "docs", "benchmarks.md"), "report file")
		cache     = flag.String("cache", filepath.Join(os.Getenv("HOME"), ".cache", "tailgate", "bench"), "baseline build cache")
		churn     = flag.String("churn-report", "", "only write the churn section of -out from this record of churn runs (make bench-churn)")
		guardOnly = flag.Bool("membership-only", false, "only write the section of -out on rebalance_guard's cost of one membership change (make bench-guard)")
		ceiling   = flag.Bool("ceiling-only", false, "only measure each tier at its ceiling and print the section")
		only      = flag.String("only", "", "with -ceiling-only: measure only the built-in configurations whose name matches this regexp (and every -extra one)")
		extra     = flag.String("extra", "", "with -ceiling-only: more configurations to measure, `name=tier:config.yaml[:VAR=value,...]` separated by ';', run on the tailgate binary or, given bin=/path among the VARs, on that build (an experiment measured in the same interleaved runs)")
		profDir   = flag.String("cpuprofile", "", "with -ceiling-only: write a CPU profile of every tailgate run to this directory (its pprof extension)")
		pgoOut    = flag.String("pgo-out", "", "with -ceiling-only: merge the profiled runs of both shipped tiers into this file (make pgo: cmd/tailgate/default.pgo)")
		compress  = flag.Bool("compression", false, "measure the compression between the tiers again (~3 min); without it the report keeps the section of the last run that did")
	)
	flag.Parse()
	if *guardOnly {
		return writeMembershipSection(*out)
	}
	if *churn != "" {
		return writeChurnSection(*churn, *out)
	}
	opts := options{gomaxprocs: runtime.GOMAXPROCS(0), stepDuration: *stepDur, decisionWait: *dw, out: *out}
	for _, s := range strings.Split(*stepsFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-steps: %w", err)
		}
		opts.steps = append(opts.steps, v)
	}

	tailgate, err := harness.BinaryPath()
	if err != nil {
		return err
	}
	baseline, err := buildBaseline(*cache)
	if err != nil {
		return err
	}
	if *ceiling {
		sel, err := newCeilingSelection(*only, *extra, *profDir, tailgate)
		if err != nil {
			return err
		}
		sel.pgoOut = *pgoOut
		section, err := ceilingSection(tailgate, baseline, sel, false)
		if err != nil {
			return err
		}
		fmt.Println(section)
		return nil
	}

	// The baseline build has none of the in-house components: it runs the
	// shipped profiles without them.
	baselineGateway, err := baselineProfile("gateway")
	if err != nil {
		return err
	}
	defer os.Remove(baselineGateway)
	baselineAgent, err := baselineProfile("agent")
	if err != nil {
		return err
	}
	defer os.Remove(baselineAgent)

	var results []result
	for _, b := range []struct {
		name, path, gatewayProfile, agentProfile string
		set                                      []string
	}{
		{"tailgate", tailgate, "", "", nil},
		{"baseline", baseline, baselineGateway, baselineAgent, nil},
		{"tailgate, guard off", tailgate, "", "", []string{harness.GuardSet("static", false)}},
	} {
		fmt.Printf("== %s (%s)\n", b.name, b.path)
		r, err := measure(b.name, b.path, b.gatewayProfile, b.agentProfile, b.set, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		results = append(results, r)
	}
	micro, err := guardMicrobenchmark()
	if err != nil {
		return err
	}
	// Last: it pins the bench process to one CPU for the rest of the run.
	tiers, err := ceilingSection(tailgate, baseline, ceilingSelection{}, *compress)
	if err != nil {
		return err
	}
	if !*compress {
		tiers += existingSection(opts.out, compressionHeading)
	}
	if err != nil {
		return err
	}
	report := render(results, micro, tiers, opts)
	fmt.Println(report)
	if section := existingChurn(opts.out); section != "" {
		report = spliceChurn(report, section)
	}
	if section := existingSectionOf(opts.out, membershipBegin, membershipEnd); section != "" {
		report = docs.Splice(report, section, membershipBegin, membershipEnd)
	}
	return os.WriteFile(opts.out, []byte(report), 0o644)
}

// step is one load level's outcome.
type step struct {
	offered, achieved float64 // spans/s
	lossless          bool
	why               string // why not lossless
	repeat            bool   // second run of a step that lost data the first time
	agentCPU, gwCPU   time.Duration
	spans             int64
	heapPerSpan       float64 // gateway heap bytes per buffered span, at peak buffering
}

type result struct {
	name          string
	size          int64
	startup       time.Duration // median, exec to health 200, gateway profile
	steps         []step
	best          *step
	peakRSS       map[string]int64
	idleAgentRSS  int64
	idleGatewayRS int64
}

func measure(name, bin, gatewayProfile, agentProfile string, gatewaySet []string, opts options) (result, error) {
	r := result{name: name, peakRSS: map[string]int64{}}
	fi, err := os.Stat(bin)
	if err != nil {
		return r, err
	}
	r.size = fi.Size()
	if r.startup, err = startupTime(bin, gatewayProfile, 7); err != nil {
		return r, err
	}
	fmt.Printf("  size %.1f MiB, startup to healthy %s (median of 7)\n", float64(r.size)/(1<<20), r.startup.Round(time.Millisecond))

	logDir, err := os.MkdirTemp("", "tailgate-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(logDir)
	set := append([]string{"processors::tail_sampling::decision_wait=" + opts.decisionWait.String()}, gatewaySet...)
	topo, err := harness.StartTopology(harness.TopologyConfig{
		Agents: 2, Gateways: 3, LogDir: logDir, Binary: bin, GatewayProfile: gatewayProfile, AgentProfile: agentProfile, GatewaySet: set,
	})
	if err != nil {
		return r, err
	}
	defer topo.Stop()
	time.Sleep(2 * time.Second)
	if st, err := topo.Agents[0].Proc.Stats(); err == nil {
		r.idleAgentRSS = st.RSS
	}
	if st, err := topo.Gateways[0].Proc.Stats(); err == nil {
		r.idleGatewayRS = st.RSS
	}

	for i, offered := range opts.steps {
		// Near saturation of the shared cores any of the binaries can lose a
		// few slow traces in one step and not in the next run of it: a lossy
		// step is run once more, and only a loss that repeats ends the climb.
		var s step
		for attempt := range 2 {
			if s, err = loadStep(topo, offered, uint64(1000+i+100*attempt), opts); err != nil {
				return r, err
			}
			s.repeat = attempt > 0
			fmt.Printf("  offered %6d spans/s: achieved %6.0f, lossless=%v %s, CPU per 10k spans agent %.3fs gateway %.3fs\n",
				offered, s.achieved, s.lossless, s.why, per10k(s.agentCPU, s.spans), per10k(s.gwCPU, s.spans))
			r.steps = append(r.steps, s)
			if s.lossless {
				break
			}
		}
		if !s.lossless {
			break
		}
		r.best = &r.steps[len(r.steps)-1]
	}
	for _, n := range topo.Nodes() {
		if st, err := n.Proc.Stats(); err == nil {
			r.peakRSS[n.Profile] = max(r.peakRSS[n.Profile], st.PeakRSS)
		}
	}
	return r, nil
}

func per10k(d time.Duration, spans int64) float64 {
	if spans == 0 {
		return 0
	}
	return d.Seconds() / float64(spans) * 10000
}

// loadStep offers one load level for opts.stepDuration and checks that
// nothing was lost: no span refused, queue-dropped or failed, no trace
// evicted undecided, every interesting trace complete, and the generator
// kept up with its schedule.
func loadStep(topo *harness.Topology, offered int, seed uint64, opts options) (step, error) {
	s := step{offered: float64(offered)}
	gen := harness.DefaultGeneratorConfig()
	meanSpans := float64(gen.MinSpans+gen.MaxSpans) / 2
	gen.Seed, gen.Agents = seed, len(topo.Agents)
	gen.Rate = float64(offered) / meanSpans
	gen.Traces = int(gen.Rate * opts.stepDuration.Seconds())
	plans, err := harness.Plan(gen)
	if err != nil {
		return s, err
	}

	before := topo.Counters()
	cpu0 := cpuByProfile(topo)
	stop := make(chan struct{})
	peak := make(chan float64, 1)
	var telemetry []int
	for _, g := range topo.Gateways {
		telemetry = append(telemetry, g.Ports.Telemetry)
	}
	go sampleHeapPerSpan(telemetry, meanSpans, stop, peak)
	ctx, cancel := context.WithTimeout(context.Background(), 3*opts.stepDuration+time.Minute)
	defer cancel()
	sent, err := harness.Send(ctx, plans, topo.AgentEndpoints(), nil)
	if err != nil {
		close(stop)
		return s, err
	}
	// Let every decision and flush happen before reading CPU and outcomes.
	time.Sleep(opts.decisionWait + 3*time.Second)
	close(stop)
	s.heapPerSpan = <-peak
	cpu1 := cpuByProfile(topo)
	after := topo.Counters()
	s.agentCPU, s.gwCPU = cpu1["agent"]-cpu0["agent"], cpu1["gateway"]-cpu0["gateway"]
	s.spans = sent.SpansSent
	// The schedule's span send times stretch past the traffic window by the
	// longest trace spread; rate it over the planned window.
	s.achieved = float64(sent.SpansSent) / max(opts.stepDuration.Seconds(), sent.Elapsed.Seconds()-4)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	var why []string
	if sent.SpansFailed > 0 {
		why = append(why, fmt.Sprintf("%d spans refused", sent.SpansFailed))
	}
	for _, c := range []struct {
		name string
		d    float64
	}{
		{"receiver refused", after.ReceiverRefused - before.ReceiverRefused},
		{"export failed", after.ExporterFailed - before.ExporterFailed},
		{"queue full", after.EnqueueFailed - before.EnqueueFailed},
		{"evicted undecided", after.DroppedTooEarly - before.DroppedTooEarly},
	} {
		if c.d > 0 {
			why = append(why, fmt.Sprintf("%.0f %s", c.d, c.name))
		}
	}
	for _, k := range []harness.Kind{harness.Error, harness.Slow} {
		if o := ev.ByKind[k]; o.Complete != o.Sent {
			why = append(why, fmt.Sprintf("%d of %d %s traces incomplete", o.Sent-o.Complete, o.Sent, k))
		}
	}
	if lag := sent.Elapsed.Seconds() - (opts.stepDuration.Seconds() + 4); lag > 0.2*opts.stepDuration.Seconds() {
		why = append(why, fmt.Sprintf("generator fell %.1fs behind", lag))
	}
	s.lossless = len(why) == 0
	if !s.lossless {
		s.why = "(" + strings.Join(why, "; ") + ")"
	}
	return s, nil
}

func cpuByProfile(topo *harness.Topology) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, n := range topo.Nodes() {
		if st, err := n.Proc.Stats(); err == nil {
			out[n.Profile] += st.CPU
		}
	}
	return out
}

// sampleHeapPerSpan samples, every 250ms, the Go heap of every gateway
// whose telemetry port is given and the spans its tail_sampling buffers,
// until stop, and reports the least-squares slope of heap over buffered
// spans: bytes of heap per buffered span. A slope over many samples evens
// out the GC's sawtooth that a single sample would catch at a random phase.
func sampleHeapPerSpan(telemetryPorts []int, meanSpans float64, stop <-chan struct{}, out chan<- float64) {
	var xs, ys []float64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			out <- slope(xs, ys)
			return
		case <-tick.C:
		}
		for _, port := range telemetryPorts {
			s, err := harness.ScrapeMetrics(port)
			if err != nil {
				continue
			}
			xs = append(xs, s.Sum("otelcol_processor_tail_sampling_sampling_traces_on_memory")*meanSpans)
			ys = append(ys, s.Sum("otelcol_process_runtime_heap_alloc_bytes"))
		}
	}
}

func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// startupTime is the median time from exec to a 200 from health_check.
func startupTime(bin, profile string, runs int) (time.Duration, error) {
	if profile == "" {
		profile = harness.ProfilePath("gateway")
	}
	var times []time.Duration
	for range runs {
		dir, err := os.MkdirTemp("", "tailgate-startup-")
		if err != nil {
			return 0, err
		}
		ports, err := harness.PickPorts()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		p, err := harness.StartProcess(bin, harness.ProcessSpec{
			Name: "startup", Args: ports.Args("gateway", profile, nil, harness.StorageSet(filepath.Join(dir, "queue"))...), Env: ports.Env("gateway"),
			HealthPort: ports.Health, LogDir: dir, HealthPoll: 2 * time.Millisecond,
		})
		if err != nil {
			return 0, err
		}
		err = p.WaitHealthy(30 * time.Second)
		times = append(times, time.Since(start))
		_ = p.Stop(30 * time.Second)
		os.RemoveAll(dir)
		if err != nil {
			return 0, err
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2], nil
}

func render(rs []result, micro, ceiling string, opts options) string {
	t, b, off := rs[0], rs[1], rs[2]
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	host, _ := os.Hostname()
	w("# Benchmarks\n\n")
	w("Generated by `make bench` (test/cmd/bench) on %s; do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	w("Machine: %d cores (GOMAXPROCS %d), %s/%s, %s, host %q. Load generator, 2 agents, 3 gateways and the sink share these cores.\n\n",
		runtime.NumCPU(), opts.gomaxprocs, runtime.GOOS, runtime.GOARCH, runtime.Version(), host)
	w("%s", ceiling)
	w("## tailgate vs upstream baseline, whole topology (same run)\n\n")
	w("Two agents, three gateways and the load generator on the same two cores: the highest lossless step is where the shared machine saturates, a floor under both binaries' ceilings (above, each tier alone).\n\n")
	w("The baseline is built by ocb from tailgate's own manifest minus its in-house components: the same upstream components at the same versions. Both run the shipped profiles (for the baseline, the gateway profile without the in-house processor).\n\n")
	w("| Figure | tailgate | baseline | tailgate / baseline |\n|---|---|---|---|\n")
	row := func(name string, tv, bv float64, unit string, prec int) {
		ratio := "n/a"
		if bv != 0 {
			ratio = fmt.Sprintf("%.2f", tv/bv)
		}
		w("| %s | %.*f %s | %.*f %s | %s |\n", name, prec, tv, unit, prec, bv, unit, ratio)
	}
	row("Binary size", float64(t.size)/(1<<20), float64(b.size)/(1<<20), "MiB", 1)
	row("Startup to healthy (gateway, median of 7)", float64(t.startup.Milliseconds()), float64(b.startup.Milliseconds()), "ms", 0)
	bestOf := func(r result) step {
		if r.best == nil {
			return step{}
		}
		return *r.best
	}
	tb, bb := bestOf(t), bestOf(b)
	row("Highest lossless throughput (agent -> 3 gateways -> sink)", tb.achieved, bb.achieved, "spans/s", 0)
	row("Agent CPU per 10k spans (at that load, both agents)", per10k(tb.agentCPU, tb.spans), per10k(bb.agentCPU, bb.spans), "CPU s", 3)
	row("Gateway CPU per 10k spans (at that load, all gateways)", per10k(tb.gwCPU, tb.spans), per10k(bb.gwCPU, bb.spans), "CPU s", 3)
	row("Peak RSS, agent", float64(t.peakRSS["agent"])/(1<<20), float64(b.peakRSS["agent"])/(1<<20), "MiB", 0)
	row("Peak RSS, gateway", float64(t.peakRSS["gateway"])/(1<<20), float64(b.peakRSS["gateway"])/(1<<20), "MiB", 0)
	row("Idle RSS, agent", float64(t.idleAgentRSS)/(1<<20), float64(b.idleAgentRSS)/(1<<20), "MiB", 0)
	row("Idle RSS, gateway", float64(t.idleGatewayRS)/(1<<20), float64(b.idleGatewayRS)/(1<<20), "MiB", 0)
	row("Gateway heap per buffered span (during decision_wait)", tb.heapPerSpan, bb.heapPerSpan, "B", 0)
	w("\n## rebalance_guard on vs off (same binary, same run)\n\n| Figure | guard on | guard off | on / off |\n|---|---|---|---|\n")
	ob := bestOf(off)
	grow := func(name string, on, offv float64, unit string, prec int) {
		ratio := "n/a"
		if offv != 0 {
			ratio = fmt.Sprintf("%.2f", on/offv)
		}
		w("| %s | %.*f %s | %.*f %s | %s |\n", name, prec, on, unit, prec, offv, unit, ratio)
	}
	grow("Highest lossless throughput", tb.achieved, ob.achieved, "spans/s", 0)
	grow("Gateway CPU per 10k spans", per10k(tb.gwCPU, tb.spans), per10k(ob.gwCPU, ob.spans), "CPU s", 3)
	grow("Peak RSS, gateway", float64(t.peakRSS["gateway"])/(1<<20), float64(off.peakRSS["gateway"])/(1<<20), "MiB", 0)
	w("\nProcessor micro-benchmark (`go test -bench BenchmarkConsumeTraces` in components/processor/rebalanceguardprocessor: 1000-span batches of 50 traces, 8 attributes per span under a resource of 6, 5-gateway ring; every span's attributes are read once for the attributes the guard owns (its trust boundary); `steady` is the common path (target < 50 ns/span, no allocation); `after_rolling_step` is within moved_in_window of a gateway added and another removed, where each trace is also checked against the two replaced rings and the spans of the traces that moved here get the keep attribute (one allocation per marked span: adding an attribute):\n\n```\n%s\n```\n", micro)
	w("\n## Load steps\n\n| Binary | Offered spans/s | Achieved spans/s | Lossless | Agent CPU s / 10k | Gateway CPU s / 10k |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		for _, s := range r.steps {
			name := r.name
			if s.repeat {
				name += " (step run again)"
			}
			w("| %s | %.0f | %.0f | %v %s | %.3f | %.3f |\n", name, s.offered, s.achieved, s.lossless, s.why, per10k(s.agentCPU, s.spans), per10k(s.gwCPU, s.spans))
		}
	}
	w("\n## Method\n\n")
	w("- Topology: 2 agents and 3 gateways from `configs/` (static resolver, gateways' `decision_wait` %s), an in-process OTLP/gRPC sink, all on loopback, started fresh per binary. The baseline has no rebalance_guard, so it runs the gateway profile with the in-house processors removed (everything else identical); \"guard off\" is tailgate with the guard's `enabled: false`.\n", opts.decisionWait)
	w("- Traffic: the e2e generator (test/harness): traces of 3-40 spans (mean 21.5) from 10 services on 2 nodes, 5%% error, 5%% slow, each span sent when it ends plus up to 1s of SDK batching delay. Each step offers a fixed span rate for %s.\n", opts.stepDuration)
	w("- A step is lossless when no span was refused by an agent, no exporter failed or dropped for a full queue, tail_sampling evicted no undecided trace, every error and slow trace reached the sink complete, and the generator kept to its schedule. Near saturation any of the binaries can lose a few slow traces in one run of a step and none in the next, so a lossy step is run once more and only a loss that repeats ends the climb (both runs are in the table). The highest lossless step's achieved rate is reported; the generator itself uses CPU on the same 2 cores, so this is a floor, not the binaries' ceiling.\n")
	w("- CPU: user+system time from /proc/<pid>/stat over the step (including the decision_wait and flush after it), divided by spans sent. Peak RSS: VmHWM. Heap per buffered span: least-squares slope of each gateway's Go heap over the spans it buffers (traces on memory x mean spans per trace), sampled every 250ms through the step.\n")
	w("- Startup: exec of the gateway profile to the first HTTP 200 from health_check, median of 7.\n")
	w("- Ratios compare two binaries measured in the same run on the same machine; absolute figures vary with the machine and its load. While tailgate has no in-house component in its pipelines the two binaries are the same code, so their ratios show this method's noise (about +-15%% for CPU here).\n\n")
	w("Reproduce: `make bench` (or `make bench BENCH_ARGS=\"-steps 20000,40000 -step-duration 20s\"`).\n")
	return sb.String()
}
