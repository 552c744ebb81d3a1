// Command localrun is `make run`: it starts a local tailgate topology on
// loopback (agents -> gateways -> an in-process OTLP sink) from the shipped
// profiles, drives synthetic multi-span traces through it for a bounded
// time, prints a summary of what reached the backend, and stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tailgate-dev/tailgate/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localrun:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		duration     = flag.Duration("duration", 20*time.Second, "how long to generate traffic")
		rate         = flag.Float64("rate", 100, "new traces per second")
		agents       = flag.Int("agents", 2, "agent processes (nodes)")
		gateways     = flag.Int("gateways", 3, "gateway processes")
		seed         = flag.Uint64("seed", 1, "generator seed (same seed, same traces)")
		decisionWait = flag.Duration("decision-wait", 5*time.Second, "gateways' tail_sampling decision_wait")
		keepLogs     = flag.Bool("keep-logs", false, "keep the processes' logs and print where")
		backend      = flag.String("backend", "", "OTLP/gRPC host:port of a real backend (Jaeger, Tempo) for the gateways, instead of the built-in sink")
		jaegerQuery  = flag.String("jaeger-query", "", "with -backend: a Jaeger query API (http://host:16686) to read the traces back from and judge them")
	)
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	logDir, err := os.MkdirTemp("", "tailgate-run-")
	if err != nil {
		return err
	}
	if !*keepLogs {
		defer os.RemoveAll(logDir)
	}

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Rate, gen.Agents = *seed, *rate, *agents
	gen.Traces = int(*rate * duration.Seconds())
	plans, err := harness.Plan(gen)
	if err != nil {
		return err
	}

	fmt.Printf("starting %d gateways and %d agents from configs/ (logs: %s)\n", *gateways, *agents, logDir)
	gatewaySet := []string{"processors::tail_sampling::decision_wait=" + decisionWait.String()}
	if *backend != "" {
		gatewaySet = append(gatewaySet, "exporters::otlp_grpc/backend_memory::endpoint="+*backend)
	}
	topo, err := harness.StartTopology(harness.TopologyConfig{
		Agents: *agents, Gateways: *gateways, LogDir: logDir, GatewaySet: gatewaySet,
	})
	if err != nil {
		return err
	}
	defer topo.Stop()
	for _, n := range append(append([]*harness.Node{}, topo.Gateways...), topo.Agents...) {
		fmt.Printf("  %-10s pid %-7d otlp %s  health :%d  telemetry :%d\n", n.Name, n.Proc.Pid(), n.OTLPEndpoint(), n.Ports.Health, n.Ports.Telemetry)
	}
	if *backend != "" {
		fmt.Printf("  backend    otlp %s\n", *backend)
	} else {
		fmt.Printf("  sink       otlp %s\n", topo.Sink.Endpoint())
	}

	fmt.Printf("sending %d traces (%.0f/s, %d-%d spans each, seed %d) for %s\n",
		gen.Traces, gen.Rate, gen.MinSpans, gen.MaxSpans, gen.Seed, *duration)
	sent, err := harness.Send(ctx, plans, topo.AgentEndpoints(), func(s, f int64, el time.Duration) {
		fmt.Printf("  %5.1fs  spans sent %-8d refused %-5d  at backend %d\n", el.Seconds(), s, f, topo.Sink.SpanCount())
	})
	if err != nil {
		return err
	}

	// Every trace is decided decision_wait after its first span reached a
	// gateway; wait that long after the last span, then until the backend
	// has been quiet for two seconds (batch and queue flushes).
	fmt.Printf("waiting for decisions (decision_wait %s) and flushes\n", *decisionWait)
	var judge harness.Backend = topo.Sink
	if *backend == "" {
		topo.Sink.WaitQuiet(ctx, *decisionWait+time.Second, 2*time.Second, *decisionWait+30*time.Second, nil)
	} else {
		// A real backend tells nothing of its ingestion: wait until the
		// gateways' backend queues are empty.
		time.Sleep(*decisionWait + time.Second)
		harness.Poll(30*time.Second, 500*time.Millisecond, func() (bool, string) { return topo.QueuedItems() == 0, "" })
		if *jaegerQuery != "" {
			judge = harness.JaegerAt(*jaegerQuery)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	counters := topo.Counters()
	if *backend != "" && *jaegerQuery == "" {
		printExported(plans, counters, *backend)
		return topo.Stop()
	}
	ev := harness.Evaluate(plans, sent, judge)
	printSummary(sent, ev, counters, topo)
	if err := topo.Stop(); err != nil {
		fmt.Println("warning:", err)
	}
	if *keepLogs {
		fmt.Println("logs kept in", logDir)
	}
	return nil
}

func printSummary(sent harness.SendResult, ev harness.Evaluation, c harness.PipelineCounters, topo *harness.Topology) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Println()
	fmt.Println("== traces at the backend, by ground truth ==")
	fmt.Fprintln(w, "kind\tsent\tkept complete\tkept partial\tnot kept\tkept %\t")
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		pct := 0.0
		if o.Sent > 0 {
			pct = 100 * float64(o.Complete+o.Partial) / float64(o.Sent)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%.1f\t\n", k, o.Sent, o.Complete, o.Partial, o.Lost, pct)
	}
	w.Flush()

	fmt.Println()
	fmt.Println("== traces kept per tail-sampling policy (gateways' own counters) ==")
	policies := make([]string, 0, len(c.KeptByPolicy))
	for p := range c.KeptByPolicy {
		policies = append(policies, p)
	}
	sort.Strings(policies)
	for _, p := range policies {
		fmt.Fprintf(w, "%s\t%.0f\t\n", p, c.KeptByPolicy[p])
	}
	w.Flush()

	fmt.Println()
	fmt.Println("== per-gateway share of traces ==")
	var total float64
	for _, v := range c.GatewayNewTraces {
		total += v
	}
	for i, v := range c.GatewayNewTraces {
		share := 0.0
		if total > 0 {
			share = 100 * v / total
		}
		fmt.Fprintf(w, "%s\t%.0f traces\t%.1f%%\t\n", topo.Gateways[i].Name, v, share)
	}
	w.Flush()

	fmt.Println()
	fmt.Println("== spans ==")
	fmt.Fprintf(w, "sent by the generator\t%d\t\n", sent.SpansSent)
	fmt.Fprintf(w, "refused by agents (seen by the generator)\t%d\t\n", sent.SpansFailed)
	fmt.Fprintf(w, "exported by the gateways\t%.0f\t\n", c.GatewaysSent)
	if topo.Sink.SpanCount() > 0 {
		fmt.Fprintf(w, "received at the built-in sink\t%d\t\n", topo.Sink.SpanCount())
	}
	fmt.Fprintf(w, "duplicates at the backend\t%d\t\n", ev.Duplicates)
	fmt.Fprintf(w, "refused by receivers (all processes)\t%.0f\t\n", c.ReceiverRefused)
	fmt.Fprintf(w, "export failures (all processes)\t%.0f\t\n", c.ExporterFailed)
	fmt.Fprintf(w, "queue-full drops (all processes)\t%.0f\t\n", c.EnqueueFailed)
	fmt.Fprintf(w, "traces dropped before decision\t%.0f\t\n", c.DroppedTooEarly)
	w.Flush()
	for _, err := range c.GatewayScrapeErrs {
		fmt.Println("warning: could not read telemetry:", err)
	}
	var partial []string
	for _, k := range harness.Kinds {
		for _, id := range ev.ByKind[k].PartialIDs {
			partial = append(partial, k.String()+":"+id.String())
		}
	}
	if len(partial) > 0 {
		fmt.Printf("\npartial traces (%d): %s\n", len(partial), strings.Join(partial[:min(10, len(partial))], " "))
	}
}

// printExported is the summary for a run whose gateways export to a real
// backend without a way to read it back: what the gateways exported, and
// a few error and slow traces (always kept) to look up there.
func printExported(plans []harness.TracePlan, c harness.PipelineCounters, backend string) {
	fmt.Println()
	fmt.Printf("the gateways exported %.0f spans to %s; traces to look up there:\n", c.GatewaysSent, backend)
	for _, k := range harness.Interesting {
		shown := 0
		for _, p := range plans {
			if p.Kind == k && shown < 3 {
				fmt.Printf("  %-6s %s (%d spans)\n", k, p.ID, len(p.Spans))
				shown++
			}
		}
	}
}
