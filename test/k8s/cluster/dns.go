package cluster

import (
	"context"
	"net"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterDNS answers, like a cluster's DNS for headless Services, A queries
// for <service>.<namespace>.svc.cluster.local with the Service's ready
// endpoint addresses from its EndpointSlices (TTL 5s). It listens on
// 127.0.0.1:53 in the test's network namespace, where a pod's resolver
// looks when its filesystem has no /etc/resolv.conf (Go's default), as in
// the tailgate image.
type ClusterDNS struct {
	cp   *ControlPlane
	conn net.PacketConn
}

// StartDNS starts serving until Stop.
func StartDNS(cp *ControlPlane) (*ClusterDNS, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		return nil, err
	}
	d := &ClusterDNS{cp: cp, conn: conn}
	go d.serve()
	return d, nil
}

// Stop stops serving.
func (d *ClusterDNS) Stop() { _ = d.conn.Close() }

func (d *ClusterDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, addr, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.conn.WriteTo(resp, addr)
		}
	}
}

func (d *ClusterDNS) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError}
	var ips []net.IP
	name := strings.TrimSuffix(q.Name.String(), ".")
	if svc, ns, ok := headless(name); ok {
		rh.RCode = dnsmessage.RCodeSuccess
		if q.Type == dnsmessage.TypeA {
			ips = d.readyAddresses(svc, ns)
		}
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, ip := range ips {
		var a [4]byte
		copy(a[:], ip.To4())
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// headless splits <svc>.<ns>.svc.cluster.local.
func headless(name string) (svc, ns string, ok bool) {
	rest, found := strings.CutSuffix(name, ".svc.cluster.local")
	if !found {
		return "", "", false
	}
	svc, ns, ok = strings.Cut(rest, ".")
	return svc, ns, ok && !strings.Contains(ns, ".")
}

func (d *ClusterDNS) readyAddresses(svc, ns string) []net.IP {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	slices, err := d.cp.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
					out = append(out, ip)
				}
			}
		}
	}
	return out
}
