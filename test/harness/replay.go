package harness

import (
	"context"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	// The null sink and the replay speak every compression the collector's
	// exporters send: gzip, and zstd and snappy, which configgrpc registers
	// with gRPC (the agents export zstd by default).
	_ "go.opentelemetry.io/collector/config/configgrpc"
	_ "google.golang.org/grpc/encoding/gzip"
)

// EncodedRequest is one OTLP trace export request, already marshalled.
type EncodedRequest struct {
	Body  []byte
	Spans int
	// Traces are the IDs of the traces with spans in it: with the replay's
	// acknowledgement times, when each trace's last span was delivered.
	Traces []pcommon.TraceID
}

// EncodeRequests encodes the planned traces as OTLP export requests in
// send order, spansPerRequest spans each (the last may hold fewer), with
// timestamps from base, and the attributes an instrumented service's spans
// carry (putInstrumentationAttributes): the pre-encoded load a replay
// sends without spending its own CPU on encoding.
func EncodeRequests(plans []TracePlan, base time.Time, spansPerRequest int) ([]EncodedRequest, error) {
	spans := schedule(plans)
	var out []EncodedRequest
	for i := 0; i < len(spans); i += spansPerRequest {
		chunk := spans[i:min(i+spansPerRequest, len(spans))]
		td := buildTraces(base, chunk)
		putInstrumentationAttributes(td)
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return nil, err
		}
		var traces []pcommon.TraceID
		seen := map[pcommon.TraceID]bool{}
		for _, sp := range chunk {
			if !seen[sp.trace.ID] {
				seen[sp.trace.ID] = true
				traces = append(traces, sp.trace.ID)
			}
		}
		out = append(out, EncodedRequest{Body: body, Spans: len(chunk), Traces: traces})
	}
	return out, nil
}

// RawCodec moves message bytes as they are: the replay sends pre-encoded
// requests, the null sink accepts them without decoding, and a test can put
// garbage on the wire of a real gRPC call.
type RawCodec struct{}

func (RawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (RawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (RawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = RawCodec{}

// TraceExportMethod is OTLP/gRPC's trace export method.
const TraceExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// ReplayResult is what a replay delivered.
type ReplayResult struct {
	Requests, Spans int64 // accepted by the target
	Failed          int64 // requests the target refused for good
	// Retried counts the refusals a request was sent again after: a
	// collector at its memory bound refuses (memory_limiter) until its
	// queues drain, and senders retry.
	Retried int64
	Elapsed time.Duration
	// Acked is when the target acknowledged each request, by its index in
	// reqs (zero: not acknowledged); kept only for a replay that does not
	// loop.
	Acked []time.Time
}

// LastDelivered is when the target acknowledged the request holding each
// trace's last span, from a replay of reqs that did not loop.
func (r ReplayResult) LastDelivered(reqs []EncodedRequest) map[pcommon.TraceID]time.Time {
	out := map[pcommon.TraceID]time.Time{}
	for i, at := range r.Acked {
		if at.IsZero() {
			continue
		}
		for _, id := range reqs[i].Traces {
			if at.After(out[id]) {
				out[id] = at
			}
		}
	}
	return out
}

// Replay sends reqs, in order, to an OTLP/gRPC target as fast as it takes
// them, with concurrency requests in flight, until every request is sent
// (or, with loop, over and over) or ctx ends. A request refused with a
// code the OTLP specification lets a client retry (Unavailable is what a
// collector answers while memory_limiter refuses) is sent again, as an SDK
// or an agent does (replayRetryFor); one refused otherwise, or until then,
// counts as failed; one cut off by ctx's end counts as neither. The
// target's CPU spent on refused attempts stays in the run.
// dialOpts come after the replay's own (plaintext; e.g. TLS credentials).
func Replay(ctx context.Context, target string, reqs []EncodedRequest, concurrency int, loop bool, dialOpts ...grpc.DialOption) (ReplayResult, error) {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(RawCodec{}))}, dialOpts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return ReplayResult{}, err
	}
	defer conn.Close()
	var (
		next                    atomic.Int64
		requests, spans, failed atomic.Int64
		retried                 atomic.Int64
		wg                      sync.WaitGroup
	)
	var acked []time.Time
	if !loop {
		acked = make([]time.Time, len(reqs)) // each index written by one sender
	}
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(reqs)) {
					if !loop {
						return
					}
					i %= int64(len(reqs))
				}
				var resp []byte
				body := reqs[i].Body
				retries, err := retryRefused(ctx, replayRetryFor, replayRetryBackoff, replayRetryBackoff, func() error {
					return conn.Invoke(ctx, TraceExportMethod, &body, &resp)
				})
				retried.Add(retries)
				if err != nil {
					if ctx.Err() == nil { // not cut off by the end of the replay
						failed.Add(1)
					}
					continue
				}
				if acked != nil {
					acked[i] = time.Now()
				}
				requests.Add(1)
				spans.Add(int64(reqs[i].Spans))
			}
		})
	}
	wg.Wait()
	return ReplayResult{Requests: requests.Load(), Spans: spans.Load(), Failed: failed.Load(), Retried: retried.Load(),
		Elapsed: time.Since(start), Acked: acked}, nil
}

// A refused request is sent again every replayRetryBackoff for up to
// replayRetryFor: long enough for a collector's queues to drain, short
// enough that a target that is gone fails the replay.
const (
	replayRetryBackoff = 50 * time.Millisecond
	replayRetryFor     = 5 * time.Second
)

// NullSink is an OTLP/gRPC trace endpoint that accepts every request
// without decoding it: a backend (or a gateway, for an agent) that costs
// the process under test nothing. After RecordArrivals it also decodes
// what it accepts and notes when each trace's spans arrived.
type NullSink struct {
	Port     int
	requests atomic.Int64
	refuse   atomic.Int64 // the next requests to refuse (RefuseNext)
	srv      *grpc.Server
	arrivals atomic.Pointer[arrivalLog]
}

// Arrival is what a recording sink received of one trace.
type Arrival struct {
	Spans int
	Last  time.Time // when its latest span arrived
}

type arrivalLog struct {
	mu     sync.Mutex
	traces map[pcommon.TraceID]Arrival
}

// RecordArrivals makes the sink decode every request it accepts from now
// on and record, per trace, its spans and when the latest arrived.
func (s *NullSink) RecordArrivals() {
	s.arrivals.Store(&arrivalLog{traces: map[pcommon.TraceID]Arrival{}})
}

// Arrivals is what the sink recorded since RecordArrivals (nil before).
func (s *NullSink) Arrivals() map[pcommon.TraceID]Arrival {
	log := s.arrivals.Load()
	if log == nil {
		return nil
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	return maps.Clone(log.traces)
}

func (l *arrivalLog) record(body []byte) error {
	now := time.Now()
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, rs := range req.Traces().ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				a := l.traces[sp.TraceID()]
				a.Spans++
				a.Last = now
				l.traces[sp.TraceID()] = a
			}
		}
	}
	return nil
}

// StartNullSink listens on a free loopback port; serverOpts are added to
// its gRPC server's (e.g. TLS credentials).
func StartNullSink(serverOpts ...grpc.ServerOption) (*NullSink, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(IntakeHost, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	s := &NullSink{Port: port, srv: grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodec(RawCodec{})}, serverOpts...)...)}
	s.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Export", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var body []byte
			if err := dec(&body); err != nil {
				return nil, err
			}
			// Read before writing: a sink told to refuse nothing (every
			// bench run) writes nothing shared per request.
			if s.refuse.Load() > 0 && s.refuse.Add(-1) >= 0 {
				return nil, status.Error(codes.Unavailable, "data refused due to high memory usage")
			}
			if log := s.arrivals.Load(); log != nil {
				if err := log.record(body); err != nil {
					return nil, err
				}
			}
			s.requests.Add(1)
			return &[]byte{}, nil
		}}},
	}, nil)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Endpoint is the sink's host:port.
func (s *NullSink) Endpoint() string { return net.JoinHostPort(IntakeHost, strconv.Itoa(s.Port)) }

// RefuseNext makes the sink refuse its next n requests as a collector at
// its memory bound does (Unavailable), and then accept again.
func (s *NullSink) RefuseNext(n int64) { s.refuse.Store(n) }

// Requests counts the export requests the sink accepted.
func (s *NullSink) Requests() int64 { return s.requests.Load() }

// Close stops the sink.
func (s *NullSink) Close() { s.srv.Stop() }
