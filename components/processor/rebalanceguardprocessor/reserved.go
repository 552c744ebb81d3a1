package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// reasonAttribute names, on a marker span, why the guard injected it.
const reasonAttribute = "tailgate.rebalance.reason"

// reservedAttributes are the attributes through which the guard tells
// tail_sampling to keep a trace (keep_attribute) and the marker filter which
// spans to drop after sampling (marker_attribute). They belong to the
// distribution: a span that arrives carrying one of them, on the span or on
// its resource (tail_sampling's boolean_attribute policy reads both), would
// otherwise force its trace kept or have the span deleted. The guard is the
// one place every span passes before tail_sampling, whichever pod sent it
// (an agent, or an application writing straight to the gateway), so it
// removes them from everything it receives, before it marks anything.
type reservedAttributes struct {
	keys [3]string
	// lengths has bit n set when a reserved key is n bytes long (keys of 64
	// bytes or more set bit 63), and firsts bit b when one starts with byte
	// b: most attribute keys are ruled out by these two alone, before any
	// string comparison (http.response.status_code is as long as
	// tailgate.rebalance.marker).
	lengths uint64
	firsts  [4]uint64
}

func newReservedAttributes(cfg *Config) reservedAttributes {
	r := reservedAttributes{keys: [3]string{cfg.KeepAttribute, cfg.MarkerAttribute, reasonAttribute}}
	for _, k := range r.keys {
		r.lengths |= lengthBit(k)
		r.firsts[k[0]>>6] |= 1 << (k[0] & 63) // Validate refuses empty keys
	}
	return r
}

// mayBeReserved rules out most keys that are not reserved, cheaply.
func (r *reservedAttributes) mayBeReserved(k string) bool {
	return r.lengths&lengthBit(k) != 0 && r.firsts[k[0]>>6]&(1<<(k[0]&63)) != 0
}

func lengthBit(k string) uint64 { return 1 << min(len(k), 63) }

// strip removes the reserved attributes from m and returns how many it
// removed. Spans rarely carry them: one read of m finds none and writes
// nothing, which keeps the guard's steady path cheap and free of
// allocations (BenchmarkConsumeTraces: 31 ns per span in all; reading
// through Range, a closure call and a Value per attribute, cost 72).
func (r *reservedAttributes) strip(m pcommon.Map) (removed int) {
	found := false
	for k := range m.All() {
		if r.mayBeReserved(k) && (k == r.keys[0] || k == r.keys[1] || k == r.keys[2]) {
			found = true
			break
		}
	}
	if !found {
		return 0
	}
	// Every occurrence: the wire allows a key twice in one map (attributes
	// are a repeated KeyValue), Remove takes the first only, and a reader
	// (tail_sampling's policies) would still find the second.
	m.RemoveIf(func(k string, _ pcommon.Value) bool {
		if k == r.keys[0] || k == r.keys[1] || k == r.keys[2] {
			removed++
			return true
		}
		return false
	})
	return removed
}

// stripAll removes the reserved attributes from every resource and span of
// td. It returns how many spans carried one, on themselves or on their
// resource, and the service.name of the first resource holding such a
// span, so that the log can name the sender.
func (r *reservedAttributes) stripAll(td ptrace.Traces) (spans int64, service string) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		res := rss.At(i).Resource().Attributes()
		onResource := r.strip(res) > 0
		before := spans
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				if r.strip(ss.At(k).Attributes()) > 0 || onResource {
					spans++
				}
			}
		}
		if spans > before && service == "" {
			service = "(no service.name)"
			if v, ok := res.Get("service.name"); ok {
				service = v.AsString()
			}
		}
	}
	return spans, service
}
