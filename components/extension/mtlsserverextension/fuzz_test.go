package mtlsserverextension

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/credentials"

	"github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension/internal/metadatatest"
)

// FuzzServerHandshake feeds the audited server handshake whatever a client
// can send first (garbage, a plaintext HTTP/2 preface, a truncated or
// mangled TLS ClientHello) and then hangs up: the handshake must fail
// without a panic, and be counted once, under one of the known reasons.
func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{0x16, 0x03, 0x03, 0xff, 0xff})
	f.Add([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28})
	f.Add([]byte{})
	// A real ClientHello, as a TLS client's first flight.
	tlsClient, tlsServer := net.Pipe()
	go func() {
		_ = tls.Client(tlsClient, &tls.Config{ServerName: "gateway", MinVersion: tls.VersionTLS12}).Handshake()
	}()
	hello := make([]byte, 4096)
	_ = tlsServer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := tlsServer.Read(hello)
	tlsClient.Close()
	tlsServer.Close()
	f.Add(hello[:n])

	p := newPKI(f)
	tt := componenttest.NewTelemetry()
	f.Cleanup(func() { _ = tt.Shutdown(context.Background()) })
	ext, err := NewFactory().Create(context.Background(), metadatatest.NewSettings(tt), mtlsConfig(p))
	require.NoError(f, err)
	require.NoError(f, ext.Start(context.Background(), componenttest.NewNopHost()))
	f.Cleanup(func() { _ = ext.Shutdown(context.Background()) })
	srv := ext.(*server)
	creds := &auditedCredentials{TransportCredentials: credentials.NewTLS(srv.tlsConfig), server: srv}
	reasons := []string{reasonNoCertificate, reasonUnknownAuthority, reasonExpired, reasonBadCertificate,
		reasonClientRejectedServer, reasonNotTLS, reasonAborted, reasonOther}

	handshakes := int64(0)
	f.Fuzz(func(t *testing.T, first []byte) {
		client, conn := net.Pipe()
		go func() {
			_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = client.Write(first)
			// Whatever the server answers is read and dropped, then the
			// client hangs up.
			_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = client.Read(make([]byte, 64<<10))
			client.Close()
		}()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		secured, _, err := creds.ServerHandshake(conn)
		require.Error(t, err, "a handshake without the client's certificate succeeded")
		require.Nil(t, secured)
		conn.Close()
		handshakes++

		var rm metricdata.ResourceMetrics
		require.NoError(t, tt.Reader.Collect(context.Background(), &rm))
		refused := int64(0)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != "otelcol_extension_mtls_server_handshakes_refused" {
					continue
				}
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					reason, _ := dp.Attributes.Value("reason")
					require.True(t, slices.Contains(reasons, reason.AsString()), "unknown reason %q", reason.AsString())
					refused += dp.Value
				}
			}
		}
		require.Equal(t, handshakes, refused, "every refused handshake is counted once")
	})
}
