package harness

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// Exporters compress with gzip by default; a real backend accepts it.
	_ "google.golang.org/grpc/encoding/gzip"
)

// Sink is an OTLP/gRPC backend standing in for Tempo or Jaeger: it records
// every span and metric the gateways export to it. It can be taken down and
// brought back on the same port to simulate a backend outage.
type Sink struct {
	Port int

	mu      sync.Mutex
	spans   map[pcommon.TraceID]map[pcommon.SpanID]int // receive count per span
	total   int
	metrics []pmetric.Metrics
	// SpanAttrs holds, per span, the attribute keys of interest given to
	// NewSink (for example tailsampling.policy), with their values.
	attrKeys  []string
	spanAttrs map[pcommon.SpanID]map[string]string
	// resources keeps the resource attributes per span, for enrichment checks.
	resources map[pcommon.SpanID]map[string]string
	// scopes keeps the instrumentation scope's attributes per span (where
	// tail_sampling's recordpolicy names the policy that kept a trace).
	scopes map[pcommon.SpanID]map[string]string

	srv *grpc.Server
	lis net.Listener
	// tls, when set, is the sink's server TLS: a backend that requires it.
	tls *tls.Config
	// latency delays every trace export's answer: a slow backend.
	latency atomic.Int64
	// credential, when set, is a request header (gRPC metadata) and the
	// value every export must carry: a backend that requires
	// authentication (RequireCredential).
	credential atomic.Pointer[[2]string]
	// httpSrv is the sink's OTLP/HTTP intake, once ServeHTTP started it.
	httpSrv *http.Server
}

// RequireCredential makes the sink refuse every export, over gRPC and
// HTTP, whose header (gRPC metadata) key does not hold value, as a backend
// that requires an API key or a token does: Unauthenticated, or HTTP 401.
func (s *Sink) RequireCredential(key, value string) {
	s.credential.Store(&[2]string{strings.ToLower(key), value})
}

// authorized tells whether an export carrying these values of the
// required header may write.
func (s *Sink) authorized(values []string) bool {
	c := s.credential.Load()
	return c == nil || slices.Contains(values, c[1])
}

func (s *Sink) checkCredential(ctx context.Context) error {
	c := s.credential.Load()
	if c == nil {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if !s.authorized(md.Get(c[0])) {
		return status.Errorf(codes.Unauthenticated, "missing or wrong %s", c[0])
	}
	return nil
}

// ServeHTTP adds an OTLP/HTTP intake (POST /v1/traces, protobuf, gzip or
// not) on a free port, recording into the same sink, and returns its
// base URL (for an otlp_http exporter's endpoint).
func (s *Sink) ServeHTTP() (string, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(IntakeHost, "0"))
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		if c := s.credential.Load(); c != nil && !s.authorized(r.Header.Values(c[0])) {
			http.Error(w, "missing or wrong "+c[0], http.StatusUnauthorized)
			return
		}
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(io.LimitReader(body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.recordTraces(req.Traces())
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	s.mu.Lock()
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv := s.httpSrv
	s.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
	return "http://" + lis.Addr().String(), nil
}

// SetLatency makes every trace export take d before it is recorded and
// answered, as a slow backend would (0: answer at once).
func (s *Sink) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// NewSink starts a sink on a free loopback port. attrKeys are span or
// resource attribute keys to remember per span.
func NewSink(attrKeys ...string) (*Sink, error) { return NewTLSSink(nil, attrKeys...) }

// NewTLSSink is NewSink serving TLS with cfg (nil: plaintext), as a backend
// that requires TLS, and a client certificate if cfg asks for one.
func NewTLSSink(cfg *tls.Config, attrKeys ...string) (*Sink, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Sink{
		Port:      port,
		spans:     map[pcommon.TraceID]map[pcommon.SpanID]int{},
		attrKeys:  attrKeys,
		spanAttrs: map[pcommon.SpanID]map[string]string{},
		resources: map[pcommon.SpanID]map[string]string{},
		scopes:    map[pcommon.SpanID]map[string]string{},
		tls:       cfg,
	}
	return s, s.Up()
}

// Endpoint is host:port for an OTLP exporter.
func (s *Sink) Endpoint() string { return net.JoinHostPort(IntakeHost, strconv.Itoa(s.Port)) }

// Up (re)starts serving on the sink's port.
func (s *Sink) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	lis, err := net.Listen("tcp", s.Endpoint())
	if err != nil {
		return err
	}
	// gRPC's default message limit (4 MiB), as Jaeger's, Tempo's and most
	// vendors' intakes: what the gateways send must fit it.
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := s.checkCredential(ctx); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	srv := grpc.NewServer(opts...)
	ptraceotlp.RegisterGRPCServer(srv, &traceService{sink: s})
	pmetricotlp.RegisterGRPCServer(srv, &metricService{sink: s})
	s.srv, s.lis = srv, lis
	go func() { _ = srv.Serve(lis) }()
	return nil
}

// Down stops serving: exporters see connection failures until Up.
func (s *Sink) Down() {
	s.mu.Lock()
	srv := s.srv
	s.srv, s.lis = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Reset forgets everything received so far, so that a run that sends the
// same traces again (same seed) is judged on its own.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = map[pcommon.TraceID]map[pcommon.SpanID]int{}
	s.total = 0
	s.metrics = nil
	s.spanAttrs = map[pcommon.SpanID]map[string]string{}
	s.resources = map[pcommon.SpanID]map[string]string{}
	s.scopes = map[pcommon.SpanID]map[string]string{}
}

// Close stops the sink for good.
func (s *Sink) Close() {
	s.Down()
	s.mu.Lock()
	srv := s.httpSrv
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

type traceService struct {
	ptraceotlp.UnimplementedGRPCServer
	sink *Sink
}

func (t *traceService) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	if d := time.Duration(t.sink.latency.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done(): // the exporter gave up: not received
			return ptraceotlp.NewExportResponse(), ctx.Err()
		}
	}
	t.sink.recordTraces(req.Traces())
	return ptraceotlp.NewExportResponse(), nil
}

type metricService struct {
	pmetricotlp.UnimplementedGRPCServer
	sink *Sink
}

func (m *metricService) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	md := pmetric.NewMetrics()
	req.Metrics().CopyTo(md)
	m.sink.mu.Lock()
	m.sink.metrics = append(m.sink.metrics, md)
	m.sink.mu.Unlock()
	return pmetricotlp.NewExportResponse(), nil
}

func (s *Sink) recordTraces(td ptrace.Traces) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		var res map[string]string
		if len(s.attrKeys) > 0 {
			res = pickAttrs(rs.Resource().Attributes(), s.attrKeys, nil)
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			var scope map[string]string
			if len(s.attrKeys) > 0 {
				scope = pickAttrs(sss.At(j).Scope().Attributes(), s.attrKeys, nil)
			}
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				byTrace := s.spans[sp.TraceID()]
				if byTrace == nil {
					byTrace = map[pcommon.SpanID]int{}
					s.spans[sp.TraceID()] = byTrace
				}
				byTrace[sp.SpanID()]++
				s.total++
				if len(s.attrKeys) > 0 {
					s.resources[sp.SpanID()] = res
					s.scopes[sp.SpanID()] = scope
					s.spanAttrs[sp.SpanID()] = pickAttrs(sp.Attributes(), s.attrKeys, nil)
				}
			}
		}
	}
}

func pickAttrs(attrs pcommon.Map, keys []string, into map[string]string) map[string]string {
	for _, k := range keys {
		if v, ok := attrs.Get(k); ok {
			if into == nil {
				into = map[string]string{}
			}
			into[k] = v.AsString()
		}
	}
	return into
}

// SpansOf returns the span IDs received for a trace with their receive counts.
func (s *Sink) SpansOf(id pcommon.TraceID) map[pcommon.SpanID]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[pcommon.SpanID]int, len(s.spans[id]))
	for k, v := range s.spans[id] {
		out[k] = v
	}
	return out
}

// TraceIDs returns every trace ID received.
func (s *Sink) TraceIDs() []pcommon.TraceID {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]pcommon.TraceID, 0, len(s.spans))
	for id := range s.spans {
		ids = append(ids, id)
	}
	return ids
}

// SpanCount is the number of spans received, duplicates included.
func (s *Sink) SpanCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// SpanAttr returns a remembered span attribute (see NewSink).
func (s *Sink) SpanAttr(id pcommon.SpanID, key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.spanAttrs[id][key]
	return v, ok
}

// ResourceAttr returns a remembered resource attribute of the span's resource.
func (s *Sink) ResourceAttr(id pcommon.SpanID, key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.resources[id][key]
	return v, ok
}

// ScopeAttr returns a remembered attribute of the span's instrumentation
// scope.
func (s *Sink) ScopeAttr(id pcommon.SpanID, key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.scopes[id][key]
	return v, ok
}

// WaitQuiet waits at least minWait, then until the sink has received
// nothing for quiet and done (when given) holds; at most maxWait in all, or
// until ctx ends. It reports whether that state was reached.
func (s *Sink) WaitQuiet(ctx context.Context, minWait, quiet, maxWait time.Duration, done func() bool) bool {
	start := time.Now()
	if !sleepCtx(ctx, minWait) {
		return false
	}
	last, lastChange := s.SpanCount(), time.Now()
	for time.Since(start) < maxWait {
		if n := s.SpanCount(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= quiet && (done == nil || done()) {
			return true
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return false
		}
	}
	return false
}

// Metrics returns every metrics payload received, oldest first.
func (s *Sink) Metrics() []pmetric.Metrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pmetric.Metrics(nil), s.metrics...)
}
