package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/credentials"
)

// Reasons a handshake is refused: the `reason` of the refusal metric and log.
const (
	reasonNoCertificate        = "no_certificate"
	reasonUnknownAuthority     = "unknown_authority"
	reasonExpired              = "expired"
	reasonBadCertificate       = "bad_certificate"
	reasonClientRejectedServer = "client_rejected_server"
	reasonNotTLS               = "not_tls"
	reasonAborted              = "aborted"
	reasonOther                = "other"
)

// auditedCredentials are gRPC's TLS credentials with every server handshake
// counted, and every refusal logged by reason.
type auditedCredentials struct {
	credentials.TransportCredentials
	server *server
}

func (c *auditedCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		reason := refusalReason(err)
		c.server.telemetry.ExtensionMtlsServerHandshakesRefused.Add(context.Background(), 1,
			metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
		c.server.refusals.record(reason, raw.RemoteAddr(), err)
		return nil, nil, err
	}
	c.server.telemetry.ExtensionMtlsServerHandshakesAccepted.Add(context.Background(), 1)
	return conn, info, nil
}

func (c *auditedCredentials) Clone() credentials.TransportCredentials {
	return &auditedCredentials{TransportCredentials: c.TransportCredentials.Clone(), server: c.server}
}

// refusalReason sorts a failed server handshake. crypto/tls has no typed
// error for a client that sent no certificate; its message has not changed
// since Go 1.0, and the unit tests pin it against the running Go.
func refusalReason(err error) string {
	var (
		invalid   x509.CertificateInvalidError
		authority x509.UnknownAuthorityError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case strings.Contains(err.Error(), "client didn't provide a certificate"):
		return reasonNoCertificate
	case errors.As(err, &authority):
		return reasonUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return reasonExpired
	case errors.As(err, &verify), errors.As(err, &invalid):
		return reasonBadCertificate
	case errors.As(err, &op) && op.Op == "remote error":
		// The client sent an alert: it did not accept this server's
		// certificate (another CA, or a name it did not expect).
		return reasonClientRejectedServer
	case errors.As(err, &header):
		return reasonNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed):
		return reasonAborted
	default:
		return reasonOther
	}
}

// presentedCertificate is the leaf a refused client presented, if any.
func presentedCertificate(err error) *x509.Certificate {
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) && len(verify.UnverifiedCertificates) > 0 {
		return verify.UnverifiedCertificates[0]
	}
	return nil
}
