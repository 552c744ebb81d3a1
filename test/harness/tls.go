package harness

// Certificates made by the tests, in the shape of a Kubernetes TLS Secret
// as cert-manager writes it (tls.crt, tls.key, ca.crt), and the profile
// variables that turn mutual TLS on between the tiers.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// GatewayServerName is the name on the gateways' shared certificate, the
// headless Service's: agents dial gateways by pod IP and verify this name.
const GatewayServerName = "tailgate-gateway-headless.observability.svc"

// CA is a certificate authority made by a test.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte
	key  *ecdsa.PrivateKey
}

// Leaf is a certificate issued by a CA, with its key, both PEM.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Issue signs a certificate for name, valid from an hour ago (or an hour
// before notAfter, so an expired one is easy to make) to notAfter, for
// server and client use, naming the DNS names given.
func (ca *CA) Issue(name string, notAfter time.Time, dnsNames ...string) (Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Leaf{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Leaf{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serialNumber() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

// SecretData is the leaf and its CA as a TLS Secret's data.
func (ca *CA) SecretData(leaf Leaf) map[string][]byte {
	return map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM}
}

// WriteSecretDir writes data into dir as the kubelet writes a Secret
// volume, and swaps it atomically on every later call: the files are
// symlinks into ..data, itself a symlink to a timestamped directory that
// is replaced by a rename. A reader sees the old files or the new ones,
// never a certificate of one and a key of the other.
func WriteSecretDir(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	version := "..v" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		return err
	}
	for name, b := range data {
		if err := os.WriteFile(filepath.Join(dir, version, name), b, 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range data {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// MTLSOverlay is the shipped mTLS overlay of a tier ("agent" or
// "gateway"), as the kustomize component and the chart add it.
func MTLSOverlay(profile string) string {
	return filepath.Join(RepoRoot(), "deploy", "kubernetes", "mtls", profile+"-config.yaml")
}

// GatewayMTLSSet are the --set flags that, over MTLSOverlay("gateway"),
// read a gateway's certificates from the Secret in dir (as mounted in a
// pod) and re-read them every reload.
func GatewayMTLSSet(dir string, reload time.Duration) []string {
	return []string{
		"extensions::mtls_server::tls::cert_file=" + filepath.Join(dir, "tls.crt"),
		"extensions::mtls_server::tls::key_file=" + filepath.Join(dir, "tls.key"),
		"extensions::mtls_server::tls::client_ca_file=" + filepath.Join(dir, "ca.crt"),
		"extensions::mtls_server::tls::reload_interval=" + reload.String(),
	}
}

// AgentMTLSSet are the --set flags that, over MTLSOverlay("agent"), make
// an agent on the static resolver (the harness's) present the certificate
// of the Secret in dir and verify the gateways' by GatewayServerName.
func AgentMTLSSet(dir string, reload time.Duration) []string {
	tls := "exporters::load_balancing/static::protocol::otlp::tls::"
	return []string{
		tls + "ca_file=" + filepath.Join(dir, "ca.crt"),
		tls + "cert_file=" + filepath.Join(dir, "tls.crt"),
		tls + "key_file=" + filepath.Join(dir, "tls.key"),
		tls + "server_name_override=" + GatewayServerName,
		tls + "reload_interval=" + reload.String(),
	}
}

// ClientTLS is a client's TLS configuration trusting ca (nil: the system's
// roots) and presenting leaf if it has one, whatever CAs the server names
// (as the collector's clients do), for the server name given.
func ClientTLS(ca *CA, leaf *Leaf, serverName string) (*tls.Config, error) {
	// h2: gRPC servers refuse a TLS client that does not offer HTTP/2.
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if ca != nil {
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AddCert(ca.Cert)
	}
	if leaf != nil {
		pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg, nil
}

// ServerTLS is a server's TLS configuration presenting leaf and, when
// clientCA is set, requiring a client certificate of it.
func ServerTLS(leaf Leaf, clientCA *CA) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		cfg.ClientCAs = x509.NewCertPool()
		cfg.ClientCAs.AddCert(clientCA.Cert)
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ExportForgedError sends endpoint one error span, which any gateway would
// keep, of a trace of its own, with the given transport credentials, as a
// pod writing straight into the sampling tier would. It returns the trace's
// ID, to look for at the backend, and the export's error.
func ExportForgedError(endpoint string, creds credentials.TransportCredentials) (pcommon.TraceID, error) {
	var id pcommon.TraceID
	if _, err := rand.Read(id[:]); err != nil {
		return id, err
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		return id, err
	}
	defer conn.Close()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "intruder")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetTraceID(id)
	span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	span.SetName("forged")
	span.Status().SetCode(ptrace.StatusCodeError)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	return id, err
}
