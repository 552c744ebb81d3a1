package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// The abuse suite: what an application or another pod can send to either
// tier's OTLP intakes, malformed or hostile, while well-behaved
// applications send their traffic. Each input gets its documented answer
// (README, "Bad input"), no process falls over or grows without bound, and
// every error and slow trace of the well-behaved senders arrives whole.

// bombSize is what each compression bomb inflates to: 50 times the
// intakes' 20 MiB body limit.
const bombSize = 1 << 30

// abuseInput is one hostile request: its body as protobuf (compressed
// with encoding when set) and the answer each protocol is documented to
// give it.
type abuseInput struct {
	name string
	// body returns the request's bytes and, for a compressed body, its
	// encoding (gzip or zstd).
	body func() (data []byte, encoding string)
	// contentType overrides OTLP/HTTP's application/x-protobuf (JSON).
	contentType string
	// grpc is false for an input only HTTP can carry (JSON).
	grpc bool
	// wantHTTP and wantGRPC are the documented answers.
	wantHTTP int
	wantGRPC codes.Code
	// service is the service.name of an input accepted and cut down: the
	// span_limits metrics must name it.
	service string
	// times is how often the input is sent to each intake (once if 0),
	// spaced out over the shop's traffic.
	times int
}

// spansRequest is an export request of one resource of service (with
// resourceAttrs added) and n spans that fill sets up.
func spansRequest(service string, n int, resourceAttrs func(pcommon.Map), fill func(i int, s ptrace.Span)) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	if resourceAttrs != nil {
		resourceAttrs(rs.Resource().Attributes())
	}
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	spans.EnsureCapacity(n)
	now := time.Now()
	for i := range n {
		s := spans.AppendEmpty()
		trace := i / 1000 // a trace has at most 1000 spans
		s.SetTraceID(pcommon.TraceID{0xab, byte(trace >> 8), byte(trace), byte(rand.Uint32()), byte(rand.Uint32())})
		var spanID pcommon.SpanID
		binary.BigEndian.PutUint64(spanID[:], rand.Uint64())
		s.SetSpanID(spanID)
		s.SetName("abuse")
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		if fill != nil {
			fill(i, s)
		}
	}
	data, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		panic(err)
	}
	return data
}

// bomb compresses bombSize zero bytes, streamed: nothing of that size is
// ever held here.
func bomb(encoding string) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch encoding {
	case "gzip":
		w, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	case "zstd":
		w, _ = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	}
	if _, err := io.Copy(w, io.LimitReader(zeros{}, bombSize)); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// abuseInputs are the inputs of the suite, with their documented answers.
func abuseInputs() []abuseInput {
	valid := spansRequest("abuse-valid", 4, nil, nil)
	const mib = 1 << 20
	// Both bombs are made once, a few seconds each.
	bombs := sync.OnceValue(func() map[string][]byte {
		return map[string][]byte{"gzip": bomb("gzip"), "zstd": bomb("zstd")}
	})
	plain := func(data []byte) func() ([]byte, string) { return func() ([]byte, string) { return data, "" } }
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4<<10)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	return []abuseInput{
		{name: "random bytes as protobuf", body: plain(garbage), grpc: true,
			wantHTTP: http.StatusBadRequest, wantGRPC: codes.Internal},
		{name: "truncated protobuf", body: plain(valid[:len(valid)/2]), grpc: true,
			wantHTTP: http.StatusBadRequest, wantGRPC: codes.Internal},
		{name: "truncated JSON", contentType: "application/json",
			body:     plain([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"01`)),
			wantHTTP: http.StatusBadRequest},
		{name: "JSON with an invalid trace ID", contentType: "application/json",
			body:     plain([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-a-trace-id","spanId":"0102030405060708","name":"x"}]}]}]}`)),
			wantHTTP: http.StatusBadRequest},
		{name: "gzip bomb (1 GiB of zeros)", grpc: true,
			body:     func() ([]byte, string) { return bombs()["gzip"], "gzip" },
			wantHTTP: http.StatusBadRequest, wantGRPC: codes.ResourceExhausted},
		{name: "zstd bomb (1 GiB of zeros)", grpc: true,
			body:     func() ([]byte, string) { return bombs()["zstd"], "zstd" },
			wantHTTP: http.StatusBadRequest, wantGRPC: codes.ResourceExhausted},
		{name: "a 40 MiB body", body: plain(bytes.Repeat([]byte{0x0a}, 40*mib)), grpc: true,
			wantHTTP: http.StatusBadRequest, wantGRPC: codes.ResourceExhausted},
		{name: "100k spans in one request (100 traces)", grpc: true,
			body:     plain(spansRequest("abuse-many-spans", 100_000, nil, nil)),
			wantHTTP: http.StatusOK, wantGRPC: codes.ResourceExhausted},
		{name: "a 1 MiB attribute with invalid UTF-8", grpc: true, service: "abuse-huge-attribute",
			body: plain(spansRequest("abuse-huge-attribute", 3, nil, func(i int, s ptrace.Span) {
				if i == 0 { // kept: an error, so the cut span must reach the backend
					s.Status().SetCode(ptrace.StatusCodeError)
					s.Attributes().PutStr("payload", strings.Repeat("x", mib)+"\xff")
				}
			})),
			wantHTTP: http.StatusOK, wantGRPC: codes.OK},
		// Five spans of one trace (so bound for one gateway), each with a
		// 1 MiB attribute: together over a gateway's 4 MiB intake, as one
		// request or as the agent would batch them with other senders'.
		{name: "five spans with a 1 MiB attribute", grpc: true, service: "abuse-huge-attributes",
			body: plain(spansRequest("abuse-huge-attributes", 5, nil, func(i int, s ptrace.Span) {
				s.Attributes().PutStr("payload", strings.Repeat("y", mib))
				if i == 0 { // kept: an error, so the cut spans must reach the backend
					s.Status().SetCode(ptrace.StatusCodeError)
				}
			})),
			wantHTTP: http.StatusOK, wantGRPC: codes.ResourceExhausted, times: 10},
		{name: "20k attributes on a span", grpc: true, service: "abuse-many-attributes",
			body: plain(spansRequest("abuse-many-attributes", 1, nil, func(_ int, s ptrace.Span) {
				for a := range 20_000 {
					s.Attributes().PutStr("attribute."+strconv.Itoa(a), strings.Repeat("v", 48))
				}
			})),
			wantHTTP: http.StatusOK, wantGRPC: codes.OK},
		{name: "a resource 10k levels deep", grpc: true,
			body: plain(spansRequest("abuse-deep-resource", 2, func(m pcommon.Map) {
				for range 10_000 {
					m = m.PutEmptyMap("nested")
				}
				m.PutStr("bottom", "x")
			}, nil)),
			wantHTTP: http.StatusOK, wantGRPC: codes.OK},
		{name: "a resource 50k attributes wide", grpc: true, service: "abuse-wide-resource",
			body: plain(spansRequest("abuse-wide-resource", 2, func(m pcommon.Map) {
				for a := range 50_000 {
					m.PutStr("label."+strconv.Itoa(a), "value")
				}
			}, nil)),
			wantHTTP: http.StatusOK, wantGRPC: codes.OK},
	}
}

// postOTLP sends body to an OTLP/HTTP intake and returns the status code.
func postOTLP(ctx context.Context, addr string, in abuseInput) (int, error) {
	body, encoding := in.body()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if in.contentType != "" {
		req.Header.Set("Content-Type", in.contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// exportRaw calls OTLP/gRPC's Export with body as the message as it is on
// the wire: already encoded and, with encoding set, already compressed
// (the gRPC client library compresses only what it encodes itself, and a
// bomb is not to be held in memory). It returns the call's status code.
func exportRaw(ctx context.Context, addr string, in abuseInput) (codes.Code, error) {
	body, encoding := in.body()
	msg := make([]byte, 5, 5+len(body))
	if encoding != "" {
		msg[0] = 1
	}
	binary.BigEndian.PutUint32(msg[1:], uint32(len(body)))
	msg = append(msg, body...)
	transport := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/"+harness.TraceExportMethod[1:], bytes.NewReader(msg))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	if encoding != "" {
		req.Header.Set("Grpc-Encoding", encoding)
	}
	resp, err := transport.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" { // a trailers-only answer
		status = resp.Header.Get("Grpc-Status")
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		return 0, fmt.Errorf("no grpc-status in the answer (HTTP %d)", resp.StatusCode)
	}
	return codes.Code(code), nil
}

// heldConnections holds connections open on addrs the way a slow or idle
// client does, until the test ends: n idle TCP connections, n requests
// whose headers never finish and n whose body trickles a byte a second.
// It returns how many of the stalled HTTP requests the server has closed,
// and the longest it held one.
func heldConnections(t *testing.T, ctx context.Context, grpcAddrs, httpAddrs []string, n int) (stalledClosed func() (int, time.Duration)) {
	t.Helper()
	var closed struct {
		sync.Mutex
		n       int
		longest time.Duration
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	hold := func(addr string, opening string, trickle bool) {
		defer wg.Done()
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		start := time.Now()
		go func() { <-ctx.Done(); conn.Close() }()
		if opening == "" { // idle
			<-ctx.Done()
			return
		}
		if _, err := io.WriteString(conn, opening); err != nil {
			return
		}
		for ctx.Err() == nil {
			if trickle {
				if _, err := conn.Write([]byte{0x0a}); err != nil {
					break
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := conn.Read(make([]byte, 512)); err != nil && !isTimeout(err) {
				break // the server answered and closed, or reset
			}
		}
		if ctx.Err() == nil {
			closed.Lock()
			closed.n++
			closed.longest = max(closed.longest, time.Since(start))
			closed.Unlock()
		}
	}
	for range n {
		for _, addr := range append(append([]string{}, grpcAddrs...), httpAddrs...) {
			wg.Add(1)
			go hold(addr, "", false)
		}
		for _, addr := range httpAddrs {
			wg.Add(2)
			go hold(addr, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n", false)
			go hold(addr, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000000\r\n\r\n", true)
		}
	}
	return func() (int, time.Duration) { closed.Lock(); defer closed.Unlock(); return closed.n, closed.longest }
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestAbuseUnderTraffic sends every abuse input to both intakes (OTLP/gRPC
// and OTLP/HTTP) of an agent and of a gateway, and holds idle and stalled
// connections open on them, while the SDK shop sends its traffic through
// both agents. Each input gets its documented answer; spans too large to
// forward are cut down and counted by their sender's service.name, and a
// kept one reaches the backend cut; no process exits and each one's peak
// memory stays under a bound; every error and slow trace of the shop
// arrives whole and none in part.
func TestAbuseUnderTraffic(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 3, GatewaySet: gatewaySet, SinkAttrKeys: []string{"payload"},
	})
	agent, gateway := topo.Agents[0], topo.Gateways[0]
	targets := []struct {
		name       string
		grpc, http string
	}{
		{"agent", agent.OTLPEndpoint(), fmt.Sprintf("127.0.0.1:%d", agent.Ports.OTLPHTTP)},
		{"gateway", gateway.OTLPEndpoint(), fmt.Sprintf("127.0.0.1:%d", gateway.Ports.OTLPHTTP)},
	}
	inputs := abuseInputs()
	shop := startShop(t, topo)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	holdCtx, release := context.WithCancel(ctx)
	defer release()
	var grpcAddrs, httpAddrs []string
	for _, tg := range targets {
		grpcAddrs, httpAddrs = append(grpcAddrs, tg.grpc), append(httpAddrs, tg.http)
	}
	stalledClosed := heldConnections(t, holdCtx, grpcAddrs, httpAddrs, 50)

	// The abuse runs beside the shop's traffic; the shop serves until it is
	// over (at least 300 requests, at most 3000).
	type answer struct {
		http int
		grpc codes.Code
		err  error
	}
	answers := map[string]*answer{}
	abuseDone := make(chan struct{})
	go func() {
		defer close(abuseDone)
		for _, in := range inputs {
			for _, tg := range targets {
				a := &answer{}
				answers[tg.name+"/"+in.name] = a
				for range max(1, in.times) {
					if a.http, a.err = postOTLP(ctx, tg.http, in); a.err != nil || a.http != in.wantHTTP {
						break
					}
					if in.grpc {
						if a.grpc, a.err = exportRaw(ctx, tg.grpc, in); a.err != nil || a.grpc != in.wantGRPC {
							break
						}
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}()
	rate := time.NewTicker(25 * time.Millisecond)
	defer rate.Stop()
	served := 0
	for over := false; served < 3000 && (served < 300 || !over); served++ {
		shop.Serve(ctx, shopRequest(served))
		select {
		case <-abuseDone:
			over = true
		default:
		}
		<-rate.C
	}
	<-abuseDone
	require.NoError(t, shop.Shutdown(ctx), "flushing the SDK exporters")
	t.Logf("the shop served %d requests during the abuse", served)

	t.Run("each input gets its documented answer", func(t *testing.T) {
		for _, in := range inputs {
			for _, tg := range targets {
				a := answers[tg.name+"/"+in.name]
				require.NoError(t, a.err, "%s: %s", tg.name, in.name)
				assert.Equal(t, in.wantHTTP, a.http, "%s OTLP/HTTP: %s", tg.name, in.name)
				if in.grpc {
					assert.Equal(t, in.wantGRPC, a.grpc, "%s OTLP/gRPC: %s (got %s)", tg.name, in.name, a.grpc)
				}
			}
		}
	})

	settle(t, topo, 3*time.Second, 2*time.Minute)

	t.Run("every error and slow trace of the shop arrives whole", func(t *testing.T) {
		ev := harness.Evaluate(shop.Plans(), harness.SendResult{}, topo.Sink)
		for _, k := range harness.Kinds {
			o := ev.ByKind[k]
			t.Logf("%-6s sent %4d complete %4d partial %d lost %4d", k, o.Sent, o.Complete, o.Partial, o.Lost)
		}
		assertKeptWhole(t, ev)
	})

	t.Run("spans too large to forward are cut down and counted by their sender", func(t *testing.T) {
		for _, node := range []*harness.Node{agent, gateway} {
			scrape, err := harness.ScrapeMetrics(node.Ports.Telemetry)
			require.NoError(t, err)
			for _, in := range inputs {
				if in.service != "" {
					assert.Positive(t, scrape.Sum("otelcol_processor_span_limits_spans_truncated", "service_name", in.service),
						"%s: spans of %s truncated", node.Name, in.service)
				}
			}
			assert.Contains(t, node.Proc.LogTail(2000), "Truncated a span over max_span_size", node.Name)
		}
		kept := 0
		for _, id := range topo.Sink.TraceIDs() {
			for span := range topo.Sink.SpansOf(id) {
				if payload, ok := topo.Sink.SpanAttr(span, "payload"); ok {
					kept++
					assert.Len(t, payload, 4096, "the kept error span's payload, cut to attribute_value_length_limit")
				}
			}
		}
		assert.Positive(t, kept, "the cut error spans reach the backend")
	})

	t.Run("no process exits and memory stays bounded", func(t *testing.T) {
		const peakBound = 1 << 30
		for _, n := range topo.Nodes() {
			require.False(t, n.Proc.Exited(), "%s exited:\n%s", n.Name, n.Proc.LogTail(30))
			st, err := n.Proc.Stats()
			require.NoError(t, err)
			t.Logf("%s peak RSS %d MiB", n.Name, st.PeakRSS>>20)
			assert.Less(t, st.PeakRSS, int64(peakBound), "%s peak RSS", n.Name)
		}
	})

	t.Run("stalled HTTP requests are closed by the server", func(t *testing.T) {
		// read_header_timeout (10s) and read_timeout (30s) of both profiles:
		// the trickling bodies are the slower to go.
		eventually(t, 90*time.Second, "every stalled request closed", func() (bool, string) {
			closed, longest := stalledClosed()
			want := 2 * 50 * len(httpAddrs)
			return closed == want, fmt.Sprintf("%d of %d closed, the last after %s", closed, want, longest)
		})
		_, longest := stalledClosed()
		t.Logf("every stalled request was closed, the last after %s", longest.Round(time.Second))
	})
	release()
}
