package main

// Compression between the tiers: an agent and a gateway, both pinned to
// the collector CPU, the agent exporting to the gateway through a relay
// in the bench that counts the bytes on the wire.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// compressionHeading opens the compression section of the report.
const compressionHeading = "## Compression between the tiers"

// existingSection is the section of the report at path that opens with
// heading, up to the next section, or "" when there is none: what a run
// that did not measure it again keeps.
func existingSection(path, heading string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.Index(s, heading+"\n")
	if i < 0 {
		return ""
	}
	rest := s[i+len(heading):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return heading + strings.TrimRight(rest, "\n") + "\n\n"
}

// compressions are the agent's choices (its load_balancing exporter's
// protocol.otlp.compression).
var compressions = []string{"gzip", "zstd", "snappy", "none"}

// compressionRun is one pass of the load through an agent and a gateway.
type compressionRun struct {
	spans              int64
	agentCPU, gwCPU    time.Duration
	wireBytes          int64
	agentUs, gwUs, bps float64 // per span: µs of agent CPU, of gateway CPU, bytes on the wire
}

// relay forwards TCP connections to target and counts the bytes sent
// towards it.
type relay struct {
	lis   net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
}

func startRelay(target string) (*relay, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{lis: lis}
	r.wg.Go(func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.wg.Go(func() {
				n, _ := io.Copy(out, in)
				r.bytes.Add(n)
				out.Close()
			})
			r.wg.Go(func() {
				_, _ = io.Copy(in, out)
				in.Close()
			})
		}
	})
	return r, nil
}

func (r *relay) addr() string { return r.lis.Addr().String() }

func (r *relay) close() { r.lis.Close() }

// measureCompression replays reqs once into an agent that exports to a
// gateway with the given compression, and returns both processes' CPU and
// the bytes on the wire per span. Bytes are counted when the agent's
// connections close, at its shutdown.
func measureCompression(tailgate, compression string, reqs []harness.EncodedRequest) (compressionRun, error) {
	var run compressionRun
	dir, err := os.MkdirTemp("", "tailgate-compression-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	backend, err := harness.StartNullSink()
	if err != nil {
		return run, err
	}
	defer backend.Close()
	start := func(profile string, ports harness.NodePorts, env map[string]string, set ...string) (*harness.Process, error) {
		maps.Copy(env, ports.Env(profile))
		args := ports.Args(profile, harness.ProfilePath(profile), nil, set...)
		return startPinned(profile, tailgate, args, strconv.Itoa(collectorCPU), 0, ports, env, dir)
	}
	gwPorts, err := harness.PickPorts()
	if err != nil {
		return run, err
	}
	gwEnv := map[string]string{
		"TAILGATE_GATEWAY_RESOLVER":         "static",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": fmt.Sprintf("[127.0.0.1:%d]", gwPorts.OTLPGRPC),
	}
	gw, err := start("gateway", gwPorts, gwEnv, append(harness.SinkSet(backend.Endpoint(), filepath.Join(dir, "queue")),
		"service::pipelines::metrics/spanmetrics::exporters=[prometheus]",
		"processors::tail_sampling::decision_wait="+ceilingDecisionWait.String())...)
	if err != nil {
		return run, err
	}
	defer func() { _ = gw.Stop(30 * time.Second) }()
	rl, err := startRelay(fmt.Sprintf("127.0.0.1:%d", gwPorts.OTLPGRPC))
	if err != nil {
		return run, err
	}
	defer rl.close()
	agentPorts, err := harness.PickPorts()
	if err != nil {
		return run, err
	}
	agent, err := start("agent", agentPorts, map[string]string{
		"TAILGATE_GATEWAY_RESOLVER":         "static",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[" + rl.addr() + "]",
	}, harness.AgentPassthrough, "exporters::load_balancing/static::protocol::otlp::compression="+compression)
	if err != nil {
		return run, err
	}
	time.Sleep(time.Second)
	a0, _ := agent.Stats()
	g0, _ := gw.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := harness.Replay(ctx, fmt.Sprintf("127.0.0.1:%d", agentPorts.OTLPGRPC), reqs, replayConcurrency, false)
	if err != nil {
		_ = agent.Stop(30 * time.Second)
		return run, err
	}
	time.Sleep(ceilingDecisionWait + 3*time.Second)
	a1, _ := agent.Stats()
	g1, _ := gw.Stats()
	// The agent's shutdown closes its connections: the relay's counts are final.
	if err := agent.Stop(30 * time.Second); err != nil {
		return run, err
	}
	time.Sleep(500 * time.Millisecond)
	if res.Failed > 0 {
		return run, fmt.Errorf("agent refused %d requests", res.Failed)
	}
	run.spans, run.agentCPU, run.gwCPU, run.wireBytes = res.Spans, a1.CPU-a0.CPU, g1.CPU-g0.CPU, rl.bytes.Load()
	n := float64(run.spans)
	run.agentUs, run.gwUs, run.bps = float64(run.agentCPU.Microseconds())/n, float64(run.gwCPU.Microseconds())/n, float64(run.wireBytes)/n
	return run, nil
}

// compressionSection measures every compression ceilingRuns times,
// interleaved, and renders the report's section.
func compressionSection(tailgate string, reqs []harness.EncodedRequest) (string, error) {
	runs := map[string][]compressionRun{}
	for i := range ceilingRuns {
		for _, c := range compressions {
			r, err := measureCompression(tailgate, c, reqs)
			if err != nil {
				return "", fmt.Errorf("compression %s: %w", c, err)
			}
			fmt.Printf("  run %d %-6s agent %.2f µs/span, gateway %.2f µs/span, %.1f B/span on the wire\n", i+1, c, r.agentUs, r.gwUs, r.bps)
			runs[c] = append(runs[c], r)
		}
	}
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	w(compressionHeading + "\n\n")
	w("Method: the same %d spans replayed once into a tailgate agent that exports to a tailgate gateway through a relay in the bench counting the bytes on the wire (gRPC framing included); both processes pinned to CPU %d, the rest of the bench on CPU %d. CPU per span is each process's own, from the replay's start until the gateway has decided and exported. %d runs each, interleaved; median (min-max).\n\n", ceilingSpans, collectorCPU, benchCPU, ceilingRuns)
	w("| Agent's compression | Agent CPU per span | Gateway CPU per span | Agent + gateway | Bytes per span on the wire |\n|---|---|---|---|---|\n")
	cell := func(rs []compressionRun, f func(compressionRun) float64, unit string) string {
		xs := make([]tierRun, len(rs))
		for i, r := range rs {
			xs[i] = tierRun{perCPUSec: f(r)}
		}
		m, lo, hi := stats(xs, func(t tierRun) float64 { return t.perCPUSec })
		return fmt.Sprintf("%.2f %s (%.2f-%.2f)", m, unit, lo, hi)
	}
	for _, c := range compressions {
		rs := runs[c]
		w("| %s | %s | %s | %s | %s |\n", c,
			cell(rs, func(r compressionRun) float64 { return r.agentUs }, "µs"),
			cell(rs, func(r compressionRun) float64 { return r.gwUs }, "µs"),
			cell(rs, func(r compressionRun) float64 { return r.agentUs + r.gwUs }, "µs"),
			cell(rs, func(r compressionRun) float64 { return r.bps }, "B"))
	}
	w("\n")
	return sb.String(), nil
}
