package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// pki holds the files the control plane is started with.
type pki struct {
	CACert, ServingCert, ServingKey string // apiserver TLS
	SAKey, SAPub                    string // service account token signing
	// The API aggregation layer: kube-apiserver proxies requests for an
	// APIService to its extension API server (prometheus-adapter) as the
	// front proxy's client, with the caller's identity in request headers
	// that the extension server trusts because of FrontProxyCACert.
	FrontProxyCACert, ProxyClientCert, ProxyClientKey string

	ca  *authority
	dir string
}

// authority is a certificate authority of the test cluster.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

var serial atomic.Int64

func newAuthority(name string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, der: der}, nil
}

// issue writes a certificate signed by the authority and its key to
// certPath and keyPath: a server certificate when ips or dnsNames are
// given, a client certificate otherwise (the API server reads a client's
// groups from its organizations).
func (a *authority) issue(certPath, keyPath, commonName string, ips []net.IP, dnsNames []string, organizations ...string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: commonName, Organization: organizations},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses: ips, DNSNames: dnsNames,
	}
	if len(ips)+len(dnsNames) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return err
	}
	if err := writePEM(certPath, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		return err
	}
	return writePEM(keyPath, ecKeyBlock(key))
}

func (a *authority) writeCert(path string) error {
	return writePEM(path, &pem.Block{Type: "CERTIFICATE", Bytes: a.der})
}

// writePKI creates under dir: a CA with an apiserver serving certificate
// for 127.0.0.1, the node network's FabricIP and the in-cluster names, a service account signing key,
// and the front proxy's CA and client certificate.
func writePKI(dir string) (pki, error) {
	p := pki{
		CACert: filepath.Join(dir, "ca.crt"), ServingCert: filepath.Join(dir, "apiserver.crt"),
		ServingKey: filepath.Join(dir, "apiserver.key"), SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub"),
		FrontProxyCACert: filepath.Join(dir, "front-proxy-ca.crt"),
		ProxyClientCert:  filepath.Join(dir, "front-proxy-client.crt"), ProxyClientKey: filepath.Join(dir, "front-proxy-client.key"),
		dir: dir,
	}
	var err error
	if p.ca, err = newAuthority("tailgate-test-ca"); err != nil {
		return p, err
	}
	if err := p.ca.writeCert(p.CACert); err != nil {
		return p, err
	}
	err = p.ca.issue(p.ServingCert, p.ServingKey, "kube-apiserver",
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1"), net.ParseIP(FabricIP)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return p, err
	}
	frontProxy, err := newAuthority("tailgate-test-front-proxy-ca")
	if err != nil {
		return p, err
	}
	if err := frontProxy.writeCert(p.FrontProxyCACert); err != nil {
		return p, err
	}
	if err := frontProxy.issue(p.ProxyClientCert, p.ProxyClientKey, frontProxyClientName, nil, nil); err != nil {
		return p, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	if err := writePEM(p.SAKey, ecKeyBlock(saKey)); err != nil {
		return p, err
	}
	return p, writePEM(p.SAPub, pubKeyBlock(&saKey.PublicKey))
}

// frontProxyClientName is the front proxy client's common name, the one
// name extension API servers accept request headers from.
const frontProxyClientName = "front-proxy-client"

// IssueServingCert writes a serving certificate for an extension API server
// of the cluster (name.namespace.svc, as kube-apiserver verifies it against
// an APIService's caBundle, here CACert) and returns the certificate's and
// key's paths.
func (p pki) IssueServingCert(name, namespace string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(p.dir, name+".crt")
	keyPath = filepath.Join(p.dir, name+".key")
	return certPath, keyPath, p.ca.issue(certPath, keyPath, name, nil, []string{name + "." + namespace + ".svc"})
}

func writePEM(path string, block *pem.Block) error {
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func ecKeyBlock(k *ecdsa.PrivateKey) *pem.Block {
	der, _ := x509.MarshalECPrivateKey(k)
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

func pubKeyBlock(k *ecdsa.PublicKey) *pem.Block {
	der, _ := x509.MarshalPKIXPublicKey(k)
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

// IssueClientCert writes a client certificate for user, in groups, and
// returns the certificate's and key's paths (a node's kubelet:
// system:node:<name> in system:nodes; kube-proxy: system:kube-proxy).
func (p pki) IssueClientCert(file, user string, groups ...string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(p.dir, file+".crt")
	keyPath = filepath.Join(p.dir, file+".key")
	return certPath, keyPath, p.ca.issue(certPath, keyPath, user, nil, nil, groups...)
}

// IssueServingCertForIP writes a serving certificate for a server reached
// at ip (a kubelet at its node's address).
func (p pki) IssueServingCertForIP(file, ip string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(p.dir, file+".crt")
	keyPath = filepath.Join(p.dir, file+".key")
	return certPath, keyPath, p.ca.issue(certPath, keyPath, file, []net.IP{net.ParseIP(ip)}, nil)
}
