package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// SDKShop is a small shop whose services are instrumented with the
// OpenTelemetry Go SDK as applications are: one tracer provider per pod,
// with its resource, a batch span processor and an OTLP/gRPC exporter
// (gzip) to its node's agent. A request is a trace across four pods:
//
//	frontend (node 1)  SERVER GET /checkout         http.request.method, http.response.status_code
//	  CLIENT POST /api/checkout
//	checkout (node 2)  SERVER POST /api/checkout    http.method, http.status_code (older instrumentation)
//	  CLIENT payment.Payment/Charge
//	payment-a|b (node 2) SERVER payment.Payment/Charge  rpc.method, rpc.response.status_code or rpc.grpc.status_code
//	  CLIENT INSERT payments                        the error, when there is one: five levels deep
//
// Every span is also recorded in memory as the SDK ended it: the ground
// truth the backend is checked against.
type SDKShop struct {
	pods     map[string]*sdkPod
	recorder *tracetest.SpanRecorder
	ids      *seededIDs

	mu    sync.Mutex
	kinds map[pcommon.TraceID]Kind
}

type sdkPod struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// ShopServices are the SDKShop's services with their pods, in the order
// of a request.
var ShopServices = []struct{ Service, Pod string }{
	{"frontend", "frontend-7d9f"}, {"checkout", "checkout-5c2b"},
	{"payment", "payment-a"}, {"payment", "payment-b"},
}

// ShopSideServices serve requests of their own (ShopRequest.Entry): a
// server span and its database call in one pod "<service>-1", exported to
// the last agent. Sampling policies that single out a service use them.
var ShopSideServices = []string{"search", "reviews", "ledger", "catalog"}

// NewSDKShop starts the shop's pods: frontend exports to agents[0],
// checkout, payment and the side services to agents[len(agents)-1].
// Trace and span IDs follow from seed (ShopSeed): tail_sampling's
// probabilistic policies decide by trace ID, so a test that serves the
// same requests meets the same decisions on every run, and a share it
// checks is reproducible, not a draw.
func NewSDKShop(ctx context.Context, agents []string, seed uint64) (*SDKShop, error) {
	s := &SDKShop{pods: map[string]*sdkPod{}, recorder: tracetest.NewSpanRecorder(), kinds: map[pcommon.TraceID]Kind{},
		ids: newSeededIDs(seed)}
	pods := append([]struct{ Service, Pod string }(nil), ShopServices...)
	for _, svc := range ShopSideServices {
		pods = append(pods, struct{ Service, Pod string }{svc, svc + "-1"})
	}
	for _, sp := range pods {
		agent := agents[len(agents)-1]
		if sp.Service == "frontend" {
			agent = agents[0]
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(agent), otlptracegrpc.WithInsecure(),
			otlptracegrpc.WithCompressor("gzip"))
		if err != nil {
			_ = s.Shutdown(ctx)
			return nil, err
		}
		res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
			attribute.String("service.name", sp.Service), attribute.String("k8s.pod.name", sp.Pod)))
		if err != nil {
			_ = s.Shutdown(ctx)
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithIDGenerator(s.ids),
			sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(200*time.Millisecond)),
			sdktrace.WithSpanProcessor(s.recorder),
		)
		s.pods[sp.Pod] = &sdkPod{provider: tp, tracer: tp.Tracer("tailgate.test/shop")}
	}
	return s, nil
}

// ShopRequest is one request through the shop.
type ShopRequest struct {
	// Fail makes the payment's database call fail (an error five levels
	// deep; every span above it stays OK).
	Fail bool
	// Slow makes the database call take this long (request latencies are
	// laid out with explicit timestamps, not slept); from the gateway
	// profile's default latency threshold (1s) on, the trace counts as Slow.
	Slow time.Duration
	// PaymentPod picks which payment pod serves the request (0 or 1).
	PaymentPod int
	// Entry, when set, is one of ShopSideServices: the request is that
	// service's server span and its database call, nothing else.
	Entry string
	// Route is the entry server span's http.route (default /checkout, or
	// /<Entry>).
	Route string
	// RootAttributes and DBAttributes are set on the entry server span and
	// on the database call (the span that fails), as an application sets
	// attributes of its own.
	RootAttributes, DBAttributes []attribute.KeyValue
	// Payload is the size in bytes of a db.query.text on the database call:
	// a large span.
	Payload int
	// TraceState, when set, makes the request continue a caller's trace
	// (a remote parent, as W3C traceparent and tracestate headers give it)
	// whose tracestate is this, e.g. "ot=th:c" (sampled at 25% upstream).
	// Every span of the request carries it.
	TraceState string
}

// Serve records one request as a trace, starting now.
func (s *SDKShop) Serve(ctx context.Context, r ShopRequest) pcommon.TraceID {
	if r.TraceState != "" {
		ctx = s.continueCaller(ctx, r.TraceState)
	}
	at := time.Now()
	step := func(d time.Duration) time.Time { at = at.Add(d); return at }
	start := func(ctx context.Context, pod, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
		return s.pods[pod].tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(step(time.Millisecond)),
			trace.WithAttributes(attrs...))
	}
	end := func(sp trace.Span, d time.Duration) { sp.End(trace.WithTimestamp(step(d))) }

	httpStatus, rpcStatus, grpcCode := 200, "OK", int64(0)
	if r.Fail {
		httpStatus, rpcStatus, grpcCode = 500, "INTERNAL", 13
	}
	dbAttrs := append([]attribute.KeyValue{attribute.String("db.system.name", "postgresql")}, r.DBAttributes...)
	if r.Payload > 0 {
		dbAttrs = append(dbAttrs, attribute.String("db.query.text", strings.Repeat("x", r.Payload)))
	}
	database := func(ctx context.Context, pod string) {
		_, db := start(ctx, pod, "INSERT payments", trace.SpanKindClient, dbAttrs...)
		if r.Fail {
			db.SetStatus(codes.Error, "deadlock detected")
		}
		end(db, 3*time.Millisecond+r.Slow)
	}
	root := func(pod, route string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
		if r.Route != "" {
			route = r.Route
		}
		attrs = append(append(attrs, attribute.String("http.route", route)), r.RootAttributes...)
		return start(ctx, pod, "GET "+route, trace.SpanKindServer, attrs...)
	}

	var front trace.Span
	if r.Entry != "" {
		var sctx context.Context
		sctx, front = root(r.Entry+"-1", "/"+r.Entry,
			attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", httpStatus))
		database(sctx, r.Entry+"-1")
		end(front, time.Millisecond)
	} else {
		paymentPod := ShopServices[2+r.PaymentPod%2].Pod
		ctx, f := root("frontend-7d9f", "/checkout",
			attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", httpStatus))
		front = f
		cctx, call := start(ctx, "frontend-7d9f", "POST /api/checkout", trace.SpanKindClient,
			attribute.String("http.request.method", "POST"), attribute.Int("http.response.status_code", httpStatus))
		cctx, checkout := start(cctx, "checkout-5c2b", "POST /api/checkout", trace.SpanKindServer,
			attribute.String("http.method", "POST"), attribute.Int("http.status_code", httpStatus))
		pctx, charge := start(cctx, "checkout-5c2b", "payment.Payment/Charge", trace.SpanKindClient,
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", "payment.Payment/Charge"),
			attribute.String("rpc.response.status_code", rpcStatus))
		pctx, serve := start(pctx, paymentPod, "payment.Payment/Charge", trace.SpanKindServer,
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "payment.Payment"),
			attribute.String("rpc.method", "Charge"), attribute.Int64("rpc.grpc.status_code", grpcCode))
		database(pctx, paymentPod)
		end(serve, time.Millisecond)
		end(charge, time.Millisecond)
		end(checkout, time.Millisecond)
		end(call, time.Millisecond)
		end(front, time.Millisecond)
	}

	id := pcommon.TraceID(front.SpanContext().TraceID())
	kind := Normal
	switch {
	case r.Fail:
		kind = Error
	case r.Slow >= time.Second:
		kind = Slow
	}
	s.mu.Lock()
	s.kinds[id] = kind
	s.mu.Unlock()
	return id
}

// continueCaller is ctx with a sampled remote parent carrying tracestate.
func (s *SDKShop) continueCaller(ctx context.Context, tracestate string) context.Context {
	ts, err := trace.ParseTraceState(tracestate)
	if err != nil {
		panic(fmt.Sprintf("ShopRequest.TraceState %q: %v", tracestate, err))
	}
	tid, sid := s.ids.NewIDs(ctx)
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	}))
}

// ShopSeed is the shop's ID seed for a test: its name, hashed, so each
// test (and subtest) sends trace IDs of its own and the same ones on every
// run.
func ShopSeed(testName string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(testName))
	return h.Sum64()
}

// seededIDs is the shop pods' sdktrace.IDGenerator: random IDs as the
// SDK's default makes them (W3C random trace IDs), drawn from one seeded
// source. Requests are served one at a time, so the n-th ID is the same
// on every run.
type seededIDs struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newSeededIDs(seed uint64) *seededIDs {
	return &seededIDs{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// NewIDs returns a non-zero trace ID and span ID.
func (g *seededIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], g.rng.Uint64())
		binary.BigEndian.PutUint64(tid[8:], g.rng.Uint64())
	}
	return tid, g.spanID()
}

// NewSpanID returns a non-zero span ID.
func (g *seededIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.spanID()
}

func (g *seededIDs) spanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], g.rng.Uint64())
	}
	return sid
}

// SpansPerRequest is how many spans Serve records per request (through the
// frontend; a side service's request has 2).
const SpansPerRequest = 6

// Shutdown flushes every pod's exporter (as an application does when it
// stops) and stops them.
func (s *SDKShop) Shutdown(ctx context.Context) error {
	var errs []error
	for name, p := range s.pods {
		if err := p.provider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ShopSpan is a span the shop's SDK ended, as the ground truth keeps it.
type ShopSpan struct {
	TraceID  pcommon.TraceID
	SpanID   pcommon.SpanID
	Service  string
	Name     string
	Error    bool
	Duration time.Duration
	// Attributes are the span's own attributes, as strings.
	Attributes map[string]string
}

// Ended is every span the shop's SDK ended so far.
func (s *SDKShop) Ended() []ShopSpan {
	ended := s.recorder.Ended()
	out := make([]ShopSpan, 0, len(ended))
	for _, sp := range ended {
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		service := ""
		for _, kv := range sp.Resource().Attributes() {
			if kv.Key == "service.name" {
				service = kv.Value.AsString()
			}
		}
		out = append(out, ShopSpan{
			TraceID: pcommon.TraceID(sp.SpanContext().TraceID()), SpanID: pcommon.SpanID(sp.SpanContext().SpanID()),
			Service: service, Name: sp.Name(), Error: sp.Status().Code == codes.Error,
			Duration: sp.EndTime().Sub(sp.StartTime()), Attributes: attrs,
		})
	}
	return out
}

// Plans is the shop's ground truth as the generator's: one plan per
// request, with every span the SDK ended, for Evaluate.
func (s *SDKShop) Plans() []TracePlan {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[pcommon.TraceID]*TracePlan{}
	var plans []*TracePlan
	for _, sp := range s.Ended() {
		p, ok := byID[sp.TraceID]
		if !ok {
			p = &TracePlan{ID: sp.TraceID, Kind: s.kinds[sp.TraceID]}
			byID[sp.TraceID] = p
			plans = append(plans, p)
		}
		p.Spans = append(p.Spans, SpanPlan{SpanID: sp.SpanID, Service: sp.Service, Error: sp.Error})
	}
	out := make([]TracePlan, len(plans))
	for i, p := range plans {
		out[i] = *p
	}
	return out
}
