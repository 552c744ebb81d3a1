package harness

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Kind is the ground-truth class of a generated trace.
type Kind int

const (
	// Normal traces are fast and error-free: only the probabilistic policy keeps them.
	Normal Kind = iota
	// Error traces have one span (not necessarily the root) with status ERROR.
	Error
	// Slow traces have a root span longer than the latency threshold.
	Slow
)

func (k Kind) String() string {
	return [...]string{"normal", "error", "slow"}[k]
}

// Kinds lists every Kind, in display order.
var Kinds = []Kind{Error, Slow, Normal}

// GeneratorConfig shapes the generated traffic. Everything derives from
// Seed, so a run can be reproduced exactly.
type GeneratorConfig struct {
	Seed   uint64
	Traces int     // how many traces in total
	Rate   float64 // new traces per second
	// Spans per trace, uniform in [MinSpans, MaxSpans].
	MinSpans, MaxSpans int
	// Share of error and slow traces; the rest are normal.
	ErrorRatio, SlowRatio float64
	// LatencyThreshold is the gateway's latency policy threshold: slow
	// traces last 1.3-2.5x it, normal traces at most a fifth of it.
	LatencyThreshold time.Duration
	// ExportDelay is the SDK-side batching delay: each span is sent when it
	// ends plus a uniform delay up to this, so the last span of a trace can
	// arrive seconds after the first, as with real SDK batch processors.
	ExportDelay time.Duration
	// Agents is how many agents (nodes) there are. Each service runs on one
	// node, so the spans of one trace come through different agents.
	Agents int
}

// DefaultGeneratorConfig is the traffic `make run` and the e2e suite start from.
func DefaultGeneratorConfig() GeneratorConfig {
	return GeneratorConfig{
		Seed: 1, Traces: 2000, Rate: 100,
		MinSpans: 3, MaxSpans: 40,
		ErrorRatio: 0.05, SlowRatio: 0.05,
		LatencyThreshold: time.Second,
		ExportDelay:      time.Second,
		Agents:           2,
	}
}

// SpanPlan is one span of a planned trace, with offsets from the trace's start.
type SpanPlan struct {
	SpanID, ParentID pcommon.SpanID
	Service, Name    string
	Kind             ptrace.SpanKind
	Start, End       time.Duration
	Error            bool
	Agent            int
	// SendAt is when the span is handed to its agent, from the trace's start.
	SendAt time.Duration
}

// TracePlan is one planned trace: the ground truth the sink is checked against.
type TracePlan struct {
	ID    pcommon.TraceID
	Kind  Kind
	Start time.Duration // offset of the trace's start from the run's start
	Spans []SpanPlan
}

// FirstSendAt is when the trace's first span is sent, from the run's start.
func (t *TracePlan) FirstSendAt() time.Duration {
	first := t.Spans[0].SendAt
	for _, s := range t.Spans {
		first = min(first, s.SendAt)
	}
	return t.Start + first
}

// LastSendAt is when the trace's last span is sent, from the run's start.
func (t *TracePlan) LastSendAt() time.Duration {
	var last time.Duration
	for _, s := range t.Spans {
		last = max(last, s.SendAt)
	}
	return t.Start + last
}

// services models a small shop; each service lives on one node (agent).
var services = []struct{ name, op string }{
	{"frontend", "GET /checkout"}, {"cart", "GetCart"}, {"checkout", "PlaceOrder"},
	{"payment", "Charge"}, {"shipping", "GetQuote"}, {"currency", "Convert"},
	{"email", "SendConfirmation"}, {"recommendation", "ListRecommendations"},
	{"inventory", "Reserve"}, {"fraud", "Score"},
}

// ServiceAgent is the agent index a service's spans are sent through.
func ServiceAgent(service string, agents int) int {
	for i, s := range services {
		if s.name == service {
			return i % agents
		}
	}
	return 0
}

// Plan builds the whole run's traces, deterministically from cfg.Seed.
func Plan(cfg GeneratorConfig) ([]TracePlan, error) {
	if cfg.Traces <= 0 || cfg.Rate <= 0 || cfg.Agents <= 0 {
		return nil, fmt.Errorf("generator: traces, rate and agents must be positive")
	}
	if cfg.MinSpans < 1 || cfg.MaxSpans < cfg.MinSpans {
		return nil, fmt.Errorf("generator: need 1 <= min spans <= max spans")
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7a11))
	plans := make([]TracePlan, cfg.Traces)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	for i := range plans {
		p := &plans[i]
		p.Start = time.Duration(i) * interval
		binary.BigEndian.PutUint64(p.ID[:8], rng.Uint64())
		binary.BigEndian.PutUint64(p.ID[8:], rng.Uint64()|1) // never the all-zero (invalid) ID
		switch r := rng.Float64(); {
		case r < cfg.ErrorRatio:
			p.Kind = Error
		case r < cfg.ErrorRatio+cfg.SlowRatio:
			p.Kind = Slow
		default:
			p.Kind = Normal
		}
		n := cfg.MinSpans + rng.IntN(cfg.MaxSpans-cfg.MinSpans+1)
		var rootDur time.Duration
		if p.Kind == Slow {
			rootDur = time.Duration(float64(cfg.LatencyThreshold) * (1.3 + 1.2*rng.Float64()))
		} else {
			rootDur = time.Duration(float64(cfg.LatencyThreshold) * (0.02 + 0.18*rng.Float64()))
		}
		p.Spans = make([]SpanPlan, n)
		for j := range p.Spans {
			s := &p.Spans[j]
			binary.BigEndian.PutUint64(s.SpanID[:], rng.Uint64()|1)
			if j == 0 {
				s.Service, s.Name, s.Kind = services[0].name, services[0].op, ptrace.SpanKindServer
				s.Start, s.End = 0, rootDur
			} else {
				parent := &p.Spans[rng.IntN(j)]
				svc := services[1+rng.IntN(len(services)-1)]
				s.ParentID = parent.SpanID
				s.Service, s.Name, s.Kind = svc.name, svc.op, ptrace.SpanKindServer
				span := parent.End - parent.Start
				s.Start = parent.Start + time.Duration(rng.Float64()*0.5*float64(span))
				s.End = s.Start + time.Duration((0.1+0.4*rng.Float64())*float64(span))
			}
			s.Agent = ServiceAgent(s.Service, cfg.Agents)
			s.SendAt = s.End + time.Duration(rng.Float64()*float64(cfg.ExportDelay))
		}
		if p.Kind == Error {
			p.Spans[rng.IntN(n)].Error = true
		}
	}
	return plans, nil
}

// scheduledSpan is a span with its absolute send offset from the run's start.
type scheduledSpan struct {
	at    time.Duration
	trace *TracePlan
	span  *SpanPlan
}

// schedule flattens the plans into spans ordered by send time.
func schedule(plans []TracePlan) []scheduledSpan {
	var out []scheduledSpan
	for i := range plans {
		for j := range plans[i].Spans {
			out = append(out, scheduledSpan{plans[i].Start + plans[i].Spans[j].SendAt, &plans[i], &plans[i].Spans[j]})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].at < out[b].at })
	return out
}

// buildTraces encodes spans as OTLP, one resource per service.
func buildTraces(base time.Time, spans []scheduledSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	byService := map[string]ptrace.SpanSlice{}
	for _, s := range spans {
		slice, ok := byService[s.span.Service]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", s.span.Service)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("tailgate/test/harness")
			slice = ss.Spans()
			byService[s.span.Service] = slice
		}
		sp := slice.AppendEmpty()
		sp.SetTraceID(s.trace.ID)
		sp.SetSpanID(s.span.SpanID)
		sp.SetParentSpanID(s.span.ParentID)
		sp.SetName(s.span.Name)
		sp.SetKind(s.span.Kind)
		start := base.Add(s.trace.Start)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(s.span.Start)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(s.span.End)))
		if s.span.Error {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage("injected failure")
		}
	}
	return td
}

// putInstrumentationAttributes gives the spans of td the attributes an
// instrumented service's spans carry once an agent has added its pod's
// (k8s_attributes): on each resource the SDK's and the pod's, 18 in all; on
// each span what its instrumentation sets, the HTTP server's semantic
// conventions for the frontend's entry point and the gRPC server's for the
// other services (10 and 8 attributes). Work that reads or copies
// attributes (decoding, tail_sampling's copies, span_metrics' dimensions,
// which match the RED metrics' by name) is measured with them.
func putInstrumentationAttributes(td ptrace.Traces) {
	for _, rs := range td.ResourceSpans().All() {
		res := rs.Resource().Attributes()
		service, _ := res.Get("service.name")
		name := service.Str()
		pod := name + "-6b8f9c7d4-k2x9p"
		res.EnsureCapacity(18)
		res.PutStr("service.namespace", "shop")
		res.PutStr("service.version", "2.7.1")
		res.PutStr("service.instance.id", "3f2a9c1e-8b7d-4e6f-a5c4-"+fmt.Sprintf("%012x", len(name)))
		res.PutStr("telemetry.sdk.name", "opentelemetry")
		res.PutStr("telemetry.sdk.language", "go")
		res.PutStr("telemetry.sdk.version", "1.38.0")
		res.PutStr("host.name", pod)
		res.PutStr("os.type", "linux")
		res.PutInt("process.pid", 1)
		res.PutStr("process.runtime.name", "go")
		res.PutStr("process.runtime.version", "go1.26.8")
		res.PutStr("k8s.namespace.name", "shop")
		res.PutStr("k8s.pod.name", pod)
		res.PutStr("k8s.pod.uid", "9d0c4b7e-2f1a-4c3b-8e5d-"+fmt.Sprintf("%012x", len(name)))
		res.PutStr("k8s.deployment.name", name)
		res.PutStr("k8s.node.name", "node-1")
		res.PutStr("k8s.pod.start_time", "2026-12-01T09:12:44Z")
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				failed := span.Status().Code() == ptrace.StatusCodeError
				attrs := span.Attributes()
				if name == services[0].name {
					status := int64(200)
					if failed {
						status = 500
					}
					attrs.EnsureCapacity(10)
					attrs.PutStr("http.request.method", "GET")
					attrs.PutStr("http.route", "/checkout")
					attrs.PutStr("url.path", "/checkout")
					attrs.PutStr("url.scheme", "https")
					attrs.PutInt("http.response.status_code", status)
					attrs.PutStr("server.address", "shop.example.com")
					attrs.PutInt("server.port", 443)
					attrs.PutStr("network.protocol.version", "1.1")
					attrs.PutStr("client.address", "203.0.113.17")
					attrs.PutStr("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
					continue
				}
				status := int64(0) // OK
				if failed {
					status = 13 // INTERNAL
				}
				attrs.EnsureCapacity(8)
				attrs.PutStr("rpc.system", "grpc")
				attrs.PutStr("rpc.service", "shop."+name+".v1."+name+"Service")
				attrs.PutStr("rpc.method", span.Name())
				attrs.PutInt("rpc.grpc.status_code", status)
				attrs.PutStr("server.address", name+".shop.svc.cluster.local")
				attrs.PutInt("server.port", 50051)
				attrs.PutStr("network.peer.address", "10.244.1.23")
				attrs.PutInt("network.peer.port", 43817)
			}
		}
	}
}
