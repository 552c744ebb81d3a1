// Not in fuzzing builds (membership_k8s_fuzz.go says why): the loadbalancing
// exporter these tests run brings client-go with it.

//go:build !tailgate_fuzz

package rebalanceguardprocessor

import (
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	lbexporter "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip"
)

// backend is an in-test OTLP/gRPC server recording the trace IDs it gets.
type backend struct {
	ptraceotlp.UnimplementedGRPCServer
	endpoint string
	mu       sync.Mutex
	got      map[pcommon.TraceID]bool
}

func (b *backend) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rss := req.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				b.got[spans.At(k).TraceID()] = true
			}
		}
	}
	return ptraceotlp.NewExportResponse(), nil
}

func startBackends(t *testing.T, n int) []*backend {
	var addrs []string
	for range n {
		addrs = append(addrs, "127.0.0.1:0")
	}
	return startBackendsAt(t, addrs...)
}

func startBackendsAt(t *testing.T, addrs ...string) []*backend {
	var out []*backend
	for _, addr := range addrs {
		lis, err := net.Listen("tcp", addr)
		require.NoError(t, err)
		srv := grpc.NewServer(grpc.MaxRecvMsgSize(256 << 20))
		b := &backend{endpoint: lis.Addr().String(), got: map[pcommon.TraceID]bool{}}
		ptraceotlp.RegisterGRPCServer(srv, b)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		out = append(out, b)
	}
	return out
}

// assertExporterRoutesByRing sends 100k random trace IDs through the real
// loadbalancing exporter of the bundled contrib version, configured with
// `resolver` (the agents' settings), to in-test backends, and checks that
// every trace landed on the backend this processor's ring names: the guard
// and the agents must agree on every owner.
func assertExporterRoutesByRing(t *testing.T, resolver map[string]any, backends []*backend, ring *hashRing, rng *rand.Rand) {
	const traces = 100_000
	for _, b := range backends {
		b.mu.Lock()
		b.got = map[pcommon.TraceID]bool{}
		b.mu.Unlock()
	}
	factory := lbexporter.NewFactory()
	cfg := factory.CreateDefaultConfig()
	require.NoError(t, confmap.NewFromStringMap(map[string]any{
		"routing_key": "traceID",
		"protocol": map[string]any{"otlp": map[string]any{
			"tls":              map[string]any{"insecure": true},
			"sending_queue":    map[string]any{"enabled": false},
			"retry_on_failure": map[string]any{"enabled": false},
		}},
		"resolver": resolver,
	}).Unmarshal(cfg))
	exp, err := factory.CreateTraces(context.Background(), exportertest.NewNopSettings(factory.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, exp.Shutdown(context.Background())) }()

	want := map[string]int{}
	ids := make([]pcommon.TraceID, traces)
	for b := 0; b < traces; b += 10_000 {
		td := ptrace.NewTraces()
		spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for i := b; i < b+10_000; i++ {
			var id pcommon.TraceID
			for k := range id {
				id[k] = byte(rng.Uint32())
			}
			ids[i] = id
			want[ring.owner(id)]++
			sp := spans.AppendEmpty()
			sp.SetTraceID(id)
			sp.SetSpanID([8]byte{1})
		}
		require.NoError(t, exp.ConsumeTraces(context.Background(), td))
	}
	agree := 0
	for _, id := range ids {
		owner := ring.owner(id)
		for _, b := range backends {
			b.mu.Lock()
			got := b.got[id]
			b.mu.Unlock()
			if got && b.endpoint == owner {
				agree++
			}
		}
	}
	assert.Equal(t, traces, agree, "traces routed by the exporter to the owner this ring computes")
	t.Logf("ring shares: %v", want)
}

// TestRingMatchesLoadBalancingExporter: static resolver, several gateway
// sets, as listed.
func TestRingMatchesLoadBalancingExporter(t *testing.T) {
	all := startBackends(t, 7)
	sets := [][]int{{0}, {0, 1}, {0, 1, 2}, {2, 0, 1, 3}, {0, 1, 2, 3, 4, 5, 6}, {4, 6}}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, set := range sets {
		t.Run(fmt.Sprint(len(set), "gateways"), func(t *testing.T) {
			var hostnames []string
			var backends []*backend
			for _, i := range set {
				hostnames = append(hostnames, all[i].endpoint)
				backends = append(backends, all[i])
			}
			assertExporterRoutesByRing(t, map[string]any{"static": map[string]any{"hostnames": hostnames}},
				backends, newHashRing(hostnames), rng)
		})
	}
}

// TestRingMatchesLoadBalancingExporterDNS: the dns resolver on the same
// name, through the system's resolver, on both sides. "localhost" resolves
// from /etc/hosts to 127.0.0.1 and, where the host has it, ::1: the IPv6
// entry checks that the guard writes it as the exporter hashes it
// (bracketed). test/k8s/live runs both resolvers against a cluster's
// answers (TestRebalanceGuardKeepsSplitTracesWhole, steady not-owned 0).
func TestRingMatchesLoadBalancingExporterDNS(t *testing.T) {
	const name = "localhost"
	addrs, err := net.DefaultResolver.LookupIPAddr(context.Background(), name)
	require.NoError(t, err)
	port := freePortOn(t, addrs)
	var listen []string
	for _, a := range addrs {
		listen = append(listen, net.JoinHostPort(a.String(), port))
	}
	backends := startBackendsAt(t, listen...)

	d := newDNSMembership(DNSResolver{Hostname: name, Port: port}, zap.NewNop())
	resolved, err := d.resolve(context.Background())
	require.NoError(t, err)
	require.Len(t, resolved, len(addrs))
	t.Logf("%s resolves to %v", name, resolved)
	assertExporterRoutesByRing(t, map[string]any{"dns": map[string]any{"hostname": name, "port": port}},
		backends, newHashRing(resolved), rand.New(rand.NewPCG(3, 5)))
}

// freePortOn finds a port free on every address (the dns resolver lists
// every address with the one port).
func freePortOn(t *testing.T, addrs []net.IPAddr) string {
	for range 50 {
		lis, err := net.Listen("tcp", net.JoinHostPort(addrs[0].String(), "0"))
		require.NoError(t, err)
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		lis.Close()
		free := true
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(a.String(), port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return ""
}

func TestTraceIDChecksumIsCRC32IEEE(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		var id pcommon.TraceID
		for k := range id {
			id[k] = byte(rng.Uint32())
		}
		require.Equal(t, crc32.ChecksumIEEE(id[:]), traceIDChecksum(id))
	}
}
