package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// errorTraces plans n small error traces: each must reach the backend whole.
func errorTraces(t *testing.T, seed uint64, n int) []harness.TracePlan {
	gen := traffic(n)
	gen.Seed, gen.Rate, gen.ErrorRatio, gen.SlowRatio, gen.MaxSpans, gen.Agents = seed, 50, 1, 0, 8, 1
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	return plans
}

// TestMalformedOTLPIsRejected sends malformed OTLP to an agent over HTTP and
// gRPC: each request is refused with an error status, the agent keeps
// running, and valid traffic before and after reaches the backend whole.
func TestMalformedOTLPIsRejected(t *testing.T) {
	topo := startTopology(t, harness.TopologyConfig{Agents: 1, Gateways: 1, GatewayEnv: gatewayEnv})
	agent := topo.Agents[0]

	before := errorTraces(t, 100, 20)
	sentBefore := send(t, topo, before)

	valid := ptrace.NewTraces()
	sp := valid.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID([16]byte{1, 2, 3})
	sp.SetSpanID([8]byte{4, 5, 6})
	validProto, err := ptraceotlp.NewExportRequestFromTraces(valid).MarshalProto()
	require.NoError(t, err)

	url := fmt.Sprintf("http://127.0.0.1:%d/v1/traces", agent.Ports.OTLPHTTP)
	httpCases := []struct {
		name, contentType string
		body              []byte
		want              int
	}{
		{"garbage protobuf", "application/x-protobuf", bytes.Repeat([]byte{0xff, 0x13, 0x37}, 1000), http.StatusBadRequest},
		{"truncated protobuf", "application/x-protobuf", validProto[:len(validProto)/2], http.StatusBadRequest},
		{"invalid trace ID (json)", "application/json",
			[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-a-trace-id","spanId":"0102030405060708","name":"x"}]}]}]}`),
			http.StatusBadRequest},
		{"trace ID of wrong length (json)", "application/json",
			[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"0102030405060708","name":"x"}]}]}]}`),
			http.StatusBadRequest},
		{"unsupported content type", "text/plain", []byte("hello"), http.StatusUnsupportedMediaType},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range httpCases {
		t.Run("http/"+c.name, func(t *testing.T) {
			resp, err := client.Post(url, c.contentType, bytes.NewReader(c.body))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, c.want, resp.StatusCode)
		})
	}

	conn, err := grpc.NewClient(agent.OTLPEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("grpc/garbage protobuf", func(t *testing.T) {
		in, out := bytes.Repeat([]byte{0xff, 0x13, 0x37}, 1000), []byte(nil)
		err := conn.Invoke(ctx, harness.TraceExportMethod, &in, &out, grpc.ForceCodec(harness.RawCodec{}))
		require.Error(t, err)
		assert.NotEqual(t, codes.OK, status.Code(err))
	})
	t.Run("grpc/oversized batch", func(t *testing.T) {
		// Above the receiver's 4 MiB default max_recv_msg_size_mib.
		big := ptrace.NewTraces()
		spans := big.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for i := range 20000 {
			s := spans.AppendEmpty()
			s.SetTraceID([16]byte{9, byte(i >> 8), byte(i), 1})
			s.SetSpanID([8]byte{byte(i >> 8), byte(i), 1})
			s.SetName(string(bytes.Repeat([]byte("x"), 256)))
		}
		_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(big))
		assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	})

	require.False(t, agent.Proc.Exited(), "agent crashed on malformed input:\n%s", agent.Proc.LogTail(30))
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", agent.Ports.Health))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "agent unhealthy after malformed input")

	after := errorTraces(t, 200, 20)
	sentAfter := send(t, topo, after)
	settle(t, topo, 2*time.Second, time.Minute)

	for name, run := range map[string]struct {
		plans []harness.TracePlan
		sent  harness.SendResult
	}{"before": {before, sentBefore}, "after": {after, sentAfter}} {
		o := harness.Evaluate(run.plans, run.sent, topo.Sink).ByKind[harness.Error]
		assert.Equal(t, len(run.plans), o.Complete, "valid error traces sent %s the malformed requests: partial %d lost %d", name, o.Partial, o.Lost)
	}
}
