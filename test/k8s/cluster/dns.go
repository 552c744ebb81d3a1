package cluster

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterDNS answers, like a cluster's DNS for headless Services, A queries
// for <service>.<namespace>.svc.cluster.local with the Service's ready
// endpoint addresses from its EndpointSlices, from the API at every query.
//
// It answers through what a production cluster puts between a pod and that
// answer: a cache per node (NodeLocal DNSCache; CoreDNS's own cache behaves
// alike) at the address the node's kubelet gives its pods as their
// nameserver (Fabric.NodeDNSIPs), which keeps an answer for its TTL
// (recordTTL, CoreDNS's kubernetes plugin default). Each node's cache is
// filled at its own moment, so after a change pods on different nodes see
// the new set up to a TTL apart.
type ClusterDNS struct {
	cp    *ControlPlane
	mu    sync.Mutex
	conns []net.PacketConn
}

// recordTTL is the TTL of every answer, and how long a node cache keeps it.
const recordTTL = 5 * time.Second

// StartDNS returns the cluster's DNS, which answers once its node caches
// serve (ServeNodeCaches), until Stop.
func StartDNS(cp *ControlPlane) (*ClusterDNS, error) {
	return &ClusterDNS{cp: cp}, nil
}

// ServeNodeCaches serves a caching resolver on port 53 of each address
// (the nodes' DNS cache addresses), each with a cache of its own.
func (d *ClusterDNS) ServeNodeCaches(addrs []string) error {
	for _, a := range addrs {
		c := &nodeCache{lookup: d.readyAddresses, entries: map[string]cachedAnswer{}}
		if err := d.listen(a, c.addresses); err != nil {
			return err
		}
	}
	return nil
}

func (d *ClusterDNS) listen(addr string, lookup func(svc, ns string) []net.IP) error {
	conn, err := net.ListenPacket("udp", net.JoinHostPort(addr, "53"))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.conns = append(d.conns, conn)
	d.mu.Unlock()
	go serveDNS(conn, lookup)
	return nil
}

// Stop stops serving.
func (d *ClusterDNS) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// nodeCache keeps each answer for recordTTL from when it was fetched.
type nodeCache struct {
	lookup  func(svc, ns string) []net.IP
	mu      sync.Mutex
	entries map[string]cachedAnswer
}

type cachedAnswer struct {
	ips     []net.IP
	fetched time.Time
}

func (c *nodeCache) addresses(svc, ns string) []net.IP {
	key := svc + "." + ns
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && time.Since(e.fetched) < recordTTL {
		return e.ips
	}
	ips := c.lookup(svc, ns)
	c.entries[key] = cachedAnswer{ips: ips, fetched: time.Now()}
	return ips
}

func serveDNS(conn net.PacketConn, lookup func(svc, ns string) []net.IP) {
	buf := make([]byte, 1500)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp, err := answer(buf[:n], lookup); err == nil {
			_, _ = conn.WriteTo(resp, addr)
		}
	}
}

func answer(query []byte, lookup func(svc, ns string) []net.IP) ([]byte, error) {
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
			ips = lookup(svc, ns)
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
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: uint32(recordTTL / time.Second)}, dnsmessage.AResource{A: a}); err != nil {
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
