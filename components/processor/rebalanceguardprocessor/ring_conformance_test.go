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
	var out []*backend
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
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

// TestRingMatchesLoadBalancingExporter sends 100k random trace IDs through
// the real loadbalancing exporter of the bundled contrib version (static
// resolver, in-test backends) for several gateway sets, and checks that
// every trace landed on the backend this processor's ring names: the guard
// and the agents must agree on every owner.
func TestRingMatchesLoadBalancingExporter(t *testing.T) {
	const traces = 100_000
	all := startBackends(t, 7)
	sets := [][]int{{0}, {0, 1}, {0, 1, 2}, {2, 0, 1, 3}, {0, 1, 2, 3, 4, 5, 6}, {4, 6}}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, set := range sets {
		t.Run(fmt.Sprint(len(set), "gateways"), func(t *testing.T) {
			var hostnames []string
			for _, i := range set {
				all[i].mu.Lock()
				all[i].got = map[pcommon.TraceID]bool{}
				all[i].mu.Unlock()
				hostnames = append(hostnames, all[i].endpoint)
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
				"resolver": map[string]any{"static": map[string]any{"hostnames": hostnames}},
			}).Unmarshal(cfg))
			exp, err := factory.CreateTraces(context.Background(), exportertest.NewNopSettings(factory.Type()), cfg)
			require.NoError(t, err)
			require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
			defer func() { require.NoError(t, exp.Shutdown(context.Background())) }()

			ring := newHashRing(hostnames)
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
				for _, i := range set {
					b := all[i]
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
		})
	}
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
