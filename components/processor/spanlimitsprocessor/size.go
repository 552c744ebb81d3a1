package spanlimitsprocessor // import "github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor"

import (
	"math/bits"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Sizes are bytes of OTLP protobuf, computed as the exporters' bytes sizer
// (exporterhelper's sending_queue batch with sizer: bytes) computes them,
// so that a span this processor lets through fits a batch of that size.
var sizer ptrace.ProtoMarshaler

// embedded is the size of a message of n bytes inside its parent: field
// tag, length and body.
func embedded(n int) int {
	return 1 + (bits.Len64(uint64(n)|1)+6)/7 + n
}

// requestSize is the size of an export request that holds one span of
// span bytes in a scope whose other fields take scope bytes, in a
// resource whose other fields take resource bytes.
func requestSize(resource, scope, span int) int {
	return embedded(resource + embedded(scope+embedded(span)))
}

// resourceEnvelope is the size of rs without its scopes' spans: the part
// every request carrying one of its spans repeats.
func resourceEnvelope(rs ptrace.ResourceSpans) int {
	n := sizer.ResourceSpansSize(rs)
	for _, ss := range rs.ScopeSpans().All() {
		n -= embedded(sizer.ScopeSpansSize(ss))
	}
	return n
}

// scopeEnvelope is the size of ss without its spans.
func scopeEnvelope(ss ptrace.ScopeSpans) int {
	n := sizer.ScopeSpansSize(ss)
	for _, span := range ss.Spans().All() {
		n -= embedded(sizer.SpanSize(span))
	}
	return n
}
