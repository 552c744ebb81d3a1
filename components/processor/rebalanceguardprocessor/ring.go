package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"cmp"
	"encoding/binary"
	"hash/crc32"
	"net"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// The ring below reproduces, bit for bit, the consistent-hash ring of the
// loadbalancing exporter of the contrib version this distribution bundles
// (exporter/loadbalancingexporter v0.161.0, consistent_hashing.go): a
// gateway must compute the same owner for a trace ID as the agents do.
// ring_conformance_test.go checks agreement against the real exporter.
const (
	ringMaxPositions uint32 = 131071 // positions in the ring
	ringWeight              = 200    // points per endpoint
	ringProbeLimit          = 10     // linear probes on a position collision
	ringDefaultPort         = "4317" // the exporter's port for endpoints without one
)

type ringItem struct {
	pos      uint32
	endpoint int32 // index into hashRing.endpoints
}

// hashRing maps trace IDs to endpoints. The zero value (no endpoints) owns
// nothing.
type hashRing struct {
	endpoints []string // normalised (host:port), in resolver order
	items     []ringItem
}

func endpointWithPort(e string) string {
	if !strings.Contains(e, ":") {
		return e + ":" + ringDefaultPort
	}
	return e
}

// canonicalEndpoint writes host:port as the resolvers do: an IPv6 host in
// brackets, any other host bare ("[10.0.0.1]:4317" becomes
// "10.0.0.1:4317"). What does not parse as host:port is left as it is.
func canonicalEndpoint(e string) string {
	host, port, err := net.SplitHostPort(e)
	if err != nil {
		return e
	}
	return net.JoinHostPort(host, port)
}

func newHashRing(resolved []string) *hashRing {
	type candidate struct {
		pos, hash uint32
		endpoint  string
	}
	r := &hashRing{}
	index := map[string]int32{}
	candidates := make([]candidate, 0, len(resolved)*ringWeight)
	var buf [4]byte
	for _, e := range resolved {
		// The exporter hashes the endpoint as resolved, and looks its
		// exporter up by the normalised form.
		norm := endpointWithPort(e)
		if _, ok := index[norm]; !ok {
			index[norm] = int32(len(r.endpoints))
			r.endpoints = append(r.endpoints, norm)
		}
		// crc32 of the endpoint then the point's index, as the exporter's
		// hash.Hash32 writes them; chained Updates give the same sum
		// without a hasher per point (200 per endpoint).
		prefix := crc32.Update(0, crc32.IEEETable, []byte(e))
		for i := range ringWeight {
			binary.LittleEndian.PutUint32(buf[:], uint32(i))
			sum := crc32.Update(prefix, crc32.IEEETable, buf[:])
			candidates = append(candidates, candidate{pos: sum % ringMaxPositions, hash: sum, endpoint: e})
		}
	}
	slices.SortFunc(candidates, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(a.hash, b.hash), strings.Compare(a.endpoint, b.endpoint))
	})
	used := make([]bool, ringMaxPositions)
	for _, c := range candidates {
		pos, probed := c.pos, 0
		for used[pos] && probed < ringProbeLimit {
			pos = (pos + 1) % ringMaxPositions
			probed++
		}
		if probed >= ringProbeLimit {
			continue
		}
		used[pos] = true
		r.items = append(r.items, ringItem{pos: pos, endpoint: index[endpointWithPort(c.endpoint)]})
	}
	slices.SortFunc(r.items, func(a, b ringItem) int { return cmp.Compare(a.pos, b.pos) })
	return r
}

// empty reports whether the ring has no endpoint (membership unknown).
func (r *hashRing) empty() bool { return r == nil || len(r.items) == 0 }

// ownerIndex returns the index of the endpoint owning the trace ID, or -1.
func (r *hashRing) ownerIndex(id pcommon.TraceID) int32 {
	if r.empty() {
		return -1
	}
	return r.ownerOfChecksum(traceIDChecksum(id))
}

// ownerOfChecksum is ownerIndex for a precomputed traceIDChecksum.
func (r *hashRing) ownerOfChecksum(sum uint32) int32 {
	pos := sum % ringMaxPositions
	// The first item at or after pos, wrapping to the first item: what the
	// exporter's recursive bsearch returns.
	i := sort.Search(len(r.items), func(i int) bool { return r.items[i].pos >= pos })
	if i == len(r.items) {
		i = 0
	}
	return r.items[i].endpoint
}

// traceIDChecksum is crc32.ChecksumIEEE(id[:]) without letting id escape
// to the heap (the library call would allocate a copy per span).
func traceIDChecksum(id pcommon.TraceID) uint32 {
	crc := ^uint32(0)
	for _, b := range id {
		crc = crc32.IEEETable[byte(crc)^b] ^ (crc >> 8)
	}
	return ^crc
}

// owner returns the endpoint owning the trace ID, or "" for an empty ring.
func (r *hashRing) owner(id pcommon.TraceID) string {
	i := r.ownerIndex(id)
	if i < 0 {
		return ""
	}
	return r.endpoints[i]
}

// indexOf returns the index of an endpoint in the ring, or -1.
func (r *hashRing) indexOf(endpoint string) int32 {
	if r == nil {
		return -1
	}
	return int32(slices.Index(r.endpoints, endpointWithPort(endpoint)))
}

// sameAs reports whether two rings place every position identically.
func (r *hashRing) sameAs(o *hashRing) bool {
	if r.empty() || o.empty() {
		return r.empty() && o.empty()
	}
	if len(r.items) != len(o.items) {
		return false
	}
	for i := range r.items {
		if r.items[i].pos != o.items[i].pos || r.endpoints[r.items[i].endpoint] != o.endpoints[o.items[i].endpoint] {
			return false
		}
	}
	return true
}
