package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// A user changes tailgate the collector's way: a YAML overlay merged over
// the shipped profile (one more --config; maps merge, lists replace). These
// tests send the kept traces to backends that require credentials, taken
// from the environment as a Kubernetes Secret gives them, and redact an
// attribute, each through an overlay alone.

// profileExtensions are the gateway profile's service::extensions: an
// overlay that adds an extension repeats them, since lists replace.
const profileExtensions = "health_check, pprof, zpages, file_storage/queue, mtls_server"

// writeOverlay writes an overlay file for a test and returns its path.
func writeOverlay(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "overlay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	return path
}

// startBackend starts a backend sink, over TLS when srv is set, that
// requires header key to hold value; it is closed when the test ends.
func startBackend(t *testing.T, srv *tlsServer, key, value string) *harness.Sink {
	t.Helper()
	var cfg *tls.Config
	if srv != nil {
		var err error
		cfg, err = harness.ServerTLS(srv.leaf, nil)
		require.NoError(t, err)
	}
	s, err := harness.NewTLSSink(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	s.RequireCredential(key, value)
	return s
}

// tlsServer is a backend's TLS: a CA, its file, and a server certificate
// of it for backend.example.
type tlsServer struct {
	caFile string
	leaf   harness.Leaf
	ca     *harness.CA
}

func newTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	ca, err := harness.NewCA("backend-ca")
	require.NoError(t, err)
	leaf, err := ca.Issue("backend", time.Now().Add(time.Hour), "backend.example")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, harness.WriteSecretDir(dir, ca.SecretData(leaf)))
	return &tlsServer{caFile: filepath.Join(dir, "ca.crt"), leaf: leaf, ca: ca}
}

// clientCreds are a client's TLS credentials that trust srv's CA.
func (srv *tlsServer) clientCreds() credentials.TransportCredentials {
	roots := x509.NewCertPool()
	roots.AddCert(srv.ca.Cert)
	return credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "backend.example", MinVersion: tls.VersionTLS12})
}

// runThroughOverlay starts agents and gateways whose gateways run the
// overlay with env (the credentials, as a Secret's keys through the
// environment), sends traffic through the agents and returns the
// evaluation of what backend received.
func runThroughOverlay(t *testing.T, overlay string, env map[string]string, backend *harness.Sink, seed uint64) harness.Evaluation {
	t.Helper()
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 2, GatewayEnv: env, GatewaySet: gatewaySet, GatewayOverlays: []string{writeOverlay(t, overlay)},
	})
	plans := plan(t, 500, seed)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	eventually(t, 2*time.Minute, "the backend receives kept traces", func() (bool, string) {
		return backend.SpanCount() > 0, fmt.Sprintf("%d spans", backend.SpanCount())
	})
	settleAt(t, topo, backend, 3*time.Second, 2*time.Minute)
	ev := harness.Evaluate(plans, sent, backend)
	for _, k := range harness.Interesting {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %4d complete %4d partial %d lost %d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	return ev
}

// exportOne sends one span to a backend over OTLP/gRPC with no credential
// and returns the answer's code.
func exportOne(t *testing.T, endpoint string, creds credentials.TransportCredentials) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	req := ptraceotlp.NewExportRequest()
	require.NoError(t, req.UnmarshalProto(spansRequest("credential-check", 1, nil, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, req)
	return status.Code(err)
}

// postOne sends one span to a backend over OTLP/HTTP with the given
// headers and returns the HTTP status.
func postOne(t *testing.T, url string, headers map[string]string) int {
	t.Helper()
	body := spansRequest("credential-check", 1, nil, nil)
	req, err := http.NewRequest(http.MethodPost, url+"/v1/traces", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestBackendWithBearerToken: a backend over TLS that requires a bearer
// token refuses spans without it; the gateways, given the token from the
// environment by an overlay that adds bearertokenauth to an OTLP/gRPC
// exporter, deliver every error and slow trace whole.
func TestBackendWithBearerToken(t *testing.T) {
	tlsSrv := newTLSServer(t)
	backend := startBackend(t, tlsSrv, "authorization", "Bearer tg-7f3a9c")
	require.Equal(t, codes.Unauthenticated, exportOne(t, backend.Endpoint(), tlsSrv.clientCreds()),
		"the backend takes spans without the token")

	ev := runThroughOverlay(t, `
extensions:
  bearertokenauth/backend:
    token: ${env:BACKEND_TOKEN}
exporters:
  otlp_grpc/vendor:
    endpoint: ${env:VENDOR_ENDPOINT}
    tls:
      ca_file: ${env:VENDOR_CA_FILE}
      server_name_override: backend.example
    auth:
      authenticator: bearertokenauth/backend
service:
  extensions: [`+profileExtensions+`, bearertokenauth/backend]
  pipelines:
    traces/sampling:
      exporters: [otlp_grpc/vendor]
`, map[string]string{
		"BACKEND_TOKEN": "tg-7f3a9c", "VENDOR_ENDPOINT": backend.Endpoint(), "VENDOR_CA_FILE": tlsSrv.caFile,
	}, backend, 81)
	assertKeptWhole(t, ev)
}

// TestBackendWithAPIKeyHeader: an OTLP/HTTP backend that requires an API
// key header refuses spans without it; an overlay that sends the kept
// traces through otlp_http with the header from the environment delivers
// every error and slow trace whole.
func TestBackendWithAPIKeyHeader(t *testing.T) {
	backend := startBackend(t, nil, "x-api-key", "key-51c0ffee")
	url, err := backend.ServeHTTP()
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, postOne(t, url, nil), "the backend takes spans without the key")
	require.Equal(t, http.StatusUnauthorized, postOne(t, url, map[string]string{"x-api-key": "wrong"}))

	ev := runThroughOverlay(t, `
exporters:
  otlp_http/vendor:
    endpoint: ${env:VENDOR_URL}
    headers:
      x-api-key: ${env:VENDOR_API_KEY}
service:
  pipelines:
    traces/sampling:
      exporters: [otlp_http/vendor]
`, map[string]string{"VENDOR_URL": url, "VENDOR_API_KEY": "key-51c0ffee"}, backend, 82)
	assertKeptWhole(t, ev)
}

// TestBackendWithOAuth2ClientCredentials: the gateways get an access
// token from a token endpoint with the client credentials grant (client
// secret from the environment) and send it to a backend that requires it;
// every error and slow trace arrives whole, and the token endpoint was
// asked with the right client.
func TestBackendWithOAuth2ClientCredentials(t *testing.T) {
	var grants atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tokens := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != "tailgate" || secret != "s3cr3t-oauth" || r.Form.Get("grant_type") != "client_credentials" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		grants.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-2b7e", "token_type": "Bearer", "expires_in": 3600})
	})}
	go func() { _ = tokens.Serve(lis) }()
	t.Cleanup(func() { _ = tokens.Close() })

	backend := startBackend(t, nil, "authorization", "Bearer at-2b7e")
	url, err := backend.ServeHTTP()
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, postOne(t, url, nil), "the backend takes spans without the token")

	ev := runThroughOverlay(t, `
extensions:
  oauth2client/backend:
    client_id: tailgate
    client_secret: ${env:OAUTH_CLIENT_SECRET}
    token_url: ${env:OAUTH_TOKEN_URL}
exporters:
  otlp_http/vendor:
    endpoint: ${env:VENDOR_URL}
    auth:
      authenticator: oauth2client/backend
service:
  extensions: [`+profileExtensions+`, oauth2client/backend]
  pipelines:
    traces/sampling:
      exporters: [otlp_http/vendor]
`, map[string]string{
		"OAUTH_CLIENT_SECRET": "s3cr3t-oauth", "OAUTH_TOKEN_URL": "http://" + lis.Addr().String() + "/token", "VENDOR_URL": url,
	}, backend, 83)
	assertKeptWhole(t, ev)
	assert.Positive(t, grants.Load(), "tokens granted")
}

// TestOverlayRedactsAnAttribute: an overlay adds a redaction processor to
// the sampling pipeline (after tail_sampling, where the guard's marker
// filter goes too) that keeps only the attributes it allows: the SDK shop's
// end-user ID, set on every request, reaches the backend on no kept span,
// and every error and slow trace is still whole.
func TestOverlayRedactsAnAttribute(t *testing.T) {
	overlay := writeOverlay(t, `
processors:
  redaction/pii:
    allow_all_keys: false
    allowed_keys: [http.route, http.request.method, http.response.status_code, http.method, http.status_code,
      rpc.system, rpc.method, rpc.service, rpc.response.status_code, rpc.grpc.status_code, db.system.name, db.query.text]
    summary: silent
service:
  pipelines:
    traces/sampling:
      processors:
        - rebalance_guard/${env:TAILGATE_GATEWAY_RESOLVER:-dns}
        - tail_sampling
        - redaction/pii
        - batch
`)
	topo := startTopology(t, harness.TopologyConfig{
		Agents: 2, Gateways: 2, GatewaySet: gatewaySet, GatewayOverlays: []string{overlay}, SinkAttrKeys: []string{"enduser.id"},
	})
	shop := startShop(t, topo)
	serveMix(t, shop, []shopClass{{"shop", 300, func(i int) harness.ShopRequest {
		r := shopRequest(i)
		r.RootAttributes = []attribute.KeyValue{attribute.String("enduser.id", fmt.Sprintf("user-%d@example.com", i))}
		return r
	}}}, 100)
	settle(t, topo, 3*time.Second, 2*time.Minute)
	ev := harness.Evaluate(shop.Plans(), harness.SendResult{}, topo.Sink)
	assertKeptWhole(t, ev)
	spans := 0
	for _, id := range topo.Sink.TraceIDs() {
		for span := range topo.Sink.SpansOf(id) {
			spans++
			v, found := topo.Sink.SpanAttr(span, "enduser.id")
			assert.False(t, found, "span %s reached the backend with enduser.id %q", span, v)
		}
	}
	require.Positive(t, spans, "kept spans")
}
