package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"

import (
	"context"
	"crypto/tls"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension/internal/metadata"
)

// server is the extension: a gRPC server middleware whose only option is
// the server's transport credentials.
//
// Why the credentials come from here rather than the receiver's own `tls`:
// gRPC performs the handshake before any interceptor or stats handler runs,
// and grpc-go reports a failed handshake only at INFO, which the collector
// raises to WARN for gRPC's logs: a receiver's `tls` refuses a client
// without a certificate, with one of another CA or an expired one, and
// nothing on the gateway says so. Transport credentials are the one place
// that sees the handshake's outcome, and a middleware's server options are
// upstream's way to supply them (they come after the receiver's own, so
// the receiver must not set `tls` as well).
type server struct {
	cfg       *Config
	telemetry *metadata.TelemetryBuilder
	refusals  *refusalLog
	tlsConfig *tls.Config // nil when TLS is off
}

var (
	_ extensionmiddleware.GRPCServer = (*server)(nil)
	_ component.Component            = (*server)(nil)
)

func newServer(cfg *Config, set component.TelemetrySettings) (*server, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	return &server{cfg: cfg, telemetry: tb, refusals: newRefusalLog(set.Logger, cfg.RefusalLogInterval)}, nil
}

// Start loads the certificates, so a missing or unreadable file stops the
// collector at start with the file's name rather than at the first client.
// configtls re-reads cert_file and key_file every reload_interval (at the
// next handshake after it) and, with client_ca_file_reload, the CA.
func (s *server) Start(ctx context.Context, _ component.Host) error {
	tlsCfg := s.cfg.TLS.Get()
	if tlsCfg == nil {
		return nil
	}
	c, err := tlsCfg.LoadTLSConfig(ctx)
	if err != nil {
		return err
	}
	if c.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("tls: client certificates are not required (client_ca_file unset)")
	}
	s.tlsConfig = c
	return nil
}

func (s *server) Shutdown(context.Context) error {
	s.telemetry.Shutdown()
	return nil
}

// GetGRPCServerOptions gives the receiver the audited TLS credentials, or
// nothing when TLS is off.
func (s *server) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	if s.tlsConfig == nil {
		return nil, nil
	}
	return []grpc.ServerOption{grpc.Creds(&auditedCredentials{
		TransportCredentials: credentials.NewTLS(s.tlsConfig),
		server:               s,
	})}, nil
}
