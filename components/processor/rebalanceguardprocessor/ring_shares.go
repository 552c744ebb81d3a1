package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import "go.opentelemetry.io/collector/pdata/pcommon"

// RingShares returns, for a gateway set as the agents' resolver lists it,
// each endpoint's share of all trace IDs on the ring the agents'
// load_balancing exporter builds over it (the ring this processor
// replicates): the share of ring positions that fall to the endpoint.
// Trace IDs' crc32 spreads them evenly over the positions, so this is the
// share of traces, and of load, each gateway gets. It is exact, not
// sampled; sizing uses it for the hottest gateway's load against the mean.
func RingShares(endpoints []string) map[string]float64 {
	r := newHashRing(endpoints)
	shares := make(map[string]float64, len(r.endpoints))
	if r.empty() {
		return shares
	}
	// Item i owns the positions after the previous item's, up to its own
	// (ownerOfChecksum); the first also owns those after the last item,
	// wrapping round.
	prev := int64(r.items[len(r.items)-1].pos) - int64(ringMaxPositions)
	for _, it := range r.items {
		shares[r.endpoints[it.endpoint]] += float64(int64(it.pos)-prev) / float64(ringMaxPositions)
		prev = int64(it.pos)
	}
	return shares
}

// RingOwner returns, for a gateway set as the agents' resolver lists it,
// the endpoint the agents route each trace ID to: for tests that load one
// gateway more than the ring would (the live autoscaling test).
func RingOwner(endpoints []string) func(pcommon.TraceID) string {
	return newHashRing(endpoints).owner
}
