package mtlsserverextension

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension/internal/metadatatest"
)

// pki is the certificates of one test: the gateways' CA, a server and a
// client of it, and the certificates a client must not be let in with.
type pki struct {
	ca, otherCA                     *testCA
	serverCert, serverKey           string
	clientCert, clientKey           string
	otherCACert, otherCAKey         string
	expiredCert, expiredKey         string
	serverUsageCert, serverUsageKey string
}

func newPKI(t testing.TB) *pki {
	dir := t.TempDir()
	p := &pki{ca: newTestCA(t, dir, "tailgate-ca"), otherCA: newTestCA(t, dir, "other-ca")}
	later := time.Now().Add(time.Hour)
	p.serverCert, p.serverKey = p.ca.issue(t, dir, "gateway", x509.ExtKeyUsageServerAuth, later)
	p.clientCert, p.clientKey = p.ca.issue(t, dir, "agent", x509.ExtKeyUsageClientAuth, later)
	p.otherCACert, p.otherCAKey = p.otherCA.issue(t, dir, "intruder", x509.ExtKeyUsageClientAuth, later)
	p.expiredCert, p.expiredKey = p.ca.issue(t, dir, "expired-agent", x509.ExtKeyUsageClientAuth, time.Now().Add(-time.Minute))
	p.serverUsageCert, p.serverUsageKey = p.ca.issue(t, dir, "server-only", x509.ExtKeyUsageServerAuth, later)
	return p
}

// serve runs a gRPC server (health service only) with the extension's
// options on loopback and returns its address, the extension's telemetry
// and its log.
func serve(t *testing.T, cfg *Config) (string, *componenttest.Telemetry, *observer.ObservedLogs) {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := metadatatest.NewSettings(tt)
	set.Logger = zap.New(core)
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	opts, err := ext.(*server).GetGRPCServerOptions(context.Background())
	require.NoError(t, err)
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), tt, logs
}

func mtlsConfig(p *pki) *Config {
	cfg := createDefaultConfig()
	cfg.TLS = configoptional.Some(configtls.ServerConfig{
		Config:       configtls.Config{CertFile: p.serverCert, KeyFile: p.serverKey},
		ClientCAFile: p.ca.file,
	})
	return cfg
}

// call makes one RPC with the given transport credentials.
func call(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestRefusalsAreCountedAndLoggedByReason: real handshakes over loopback.
// The agent of the CA gets in; every other client is refused, counted by
// reason and named in a warning.
func TestRefusalsAreCountedAndLoggedByReason(t *testing.T) {
	p := newPKI(t)
	addr, tt, logs := serve(t, mtlsConfig(p))

	tlsCreds := func(root *testCA, cert, key string) credentials.TransportCredentials {
		return credentials.NewTLS(clientTLS(t, root, cert, key))
	}
	require.NoError(t, call(t, addr, tlsCreds(p.ca, p.clientCert, p.clientKey)), "the CA's client is accepted")

	refused := []struct {
		reason, subject string
		creds           credentials.TransportCredentials
	}{
		{reasonNoCertificate, "", tlsCreds(p.ca, "", "")},
		{reasonUnknownAuthority, "CN=intruder", tlsCreds(p.ca, p.otherCACert, p.otherCAKey)},
		{reasonExpired, "CN=expired-agent", tlsCreds(p.ca, p.expiredCert, p.expiredKey)},
		{reasonBadCertificate, "CN=server-only", tlsCreds(p.ca, p.serverUsageCert, p.serverUsageKey)},
		{reasonClientRejectedServer, "", tlsCreds(p.otherCA, p.clientCert, p.clientKey)},
		{reasonNotTLS, "", insecure.NewCredentials()},
	}
	var want []metricdata.DataPoint[int64]
	for _, r := range refused {
		t.Run(r.reason, func(t *testing.T) {
			require.Error(t, call(t, addr, r.creds), "refused")
			require.Eventually(t, func() bool {
				return logs.FilterField(zap.String("reason", r.reason)).Len() > 0
			}, 10*time.Second, 10*time.Millisecond, "a warning names the reason: %v", logs.All())
			line := logs.FilterField(zap.String("reason", r.reason)).All()[0]
			assert.Equal(t, zapcore.WarnLevel, line.Level)
			assert.Contains(t, line.ContextMap()["peer"], "127.0.0.1:")
			if r.subject != "" {
				assert.Equal(t, r.subject, line.ContextMap()["client_certificate_subject"])
			}
		})
		want = append(want, metricdata.DataPoint[int64]{Attributes: attribute.NewSet(attribute.String("reason", r.reason))})
	}
	// gRPC clients retry a failed handshake with backoff, so a reason may
	// count more than once: every reason counted, no other.
	got, err := tt.GetMetric("otelcol_extension_mtls_server_handshakes_refused")
	require.NoError(t, err)
	sum := got.Data.(metricdata.Sum[int64])
	require.Len(t, sum.DataPoints, len(refused))
	for i := range sum.DataPoints {
		assert.Positive(t, sum.DataPoints[i].Value)
		sum.DataPoints[i].Value = 0
	}
	metricdatatest.AssertEqual(t, metricdata.Sum[int64]{DataPoints: want, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true},
		sum, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreValue())
	metadatatest.AssertEqualExtensionMtlsServerHandshakesAccepted(t, tt,
		[]metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
}

// TestOffAddsNothing: without tls (or with enabled: false) the extension
// gives the receiver no option, and a plaintext client is served.
func TestOffAddsNothing(t *testing.T) {
	addr, tt, _ := serve(t, createDefaultConfig())
	require.NoError(t, call(t, addr, insecure.NewCredentials()))
	_, err := tt.GetMetric("otelcol_extension_mtls_server_handshakes_refused")
	assert.Error(t, err, "nothing counted")
}

// TestStartNamesAMissingFile: certificates are loaded at start, so a
// missing file stops the collector with the file's name.
func TestStartNamesAMissingFile(t *testing.T) {
	p := newPKI(t)
	cfg := mtlsConfig(p)
	cfg.TLS.Get().CertFile = "/nonexistent/tls.crt"
	ext, err := NewFactory().Create(context.Background(), metadatatest.NewSettings(componenttest.NewTelemetry()), cfg)
	require.NoError(t, err)
	assert.ErrorContains(t, ext.Start(context.Background(), componenttest.NewNopHost()), "/nonexistent/tls.crt")
}

// TestRefusalReasonPinsCryptoTLS: the one reason read from a message
// (crypto/tls has no type for it) still matches the running Go's error.
func TestRefusalReasonPinsCryptoTLS(t *testing.T) {
	p := newPKI(t)
	serverCfg, err := mtlsConfig(p).TLS.Get().LoadTLSConfig(context.Background())
	require.NoError(t, err)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		// The client's side of TLS 1.3 ends before the server checks its
		// certificate: read the server's alert, then hang up.
		c := tls.Client(a, clientTLS(t, p.ca, "", ""))
		_ = c.Handshake()
		_, _ = c.Read(make([]byte, 1))
		a.Close()
	}()
	err = tls.Server(b, serverCfg).Handshake()
	require.Error(t, err)
	assert.Equal(t, reasonNoCertificate, refusalReason(err), "%v", err)
	assert.Equal(t, reasonAborted, refusalReason(errors.Join(errors.New("read"), net.ErrClosed)))
	assert.Equal(t, reasonOther, refusalReason(errors.New("credentials: cannot check peer: missing selected ALPN property")))
}
