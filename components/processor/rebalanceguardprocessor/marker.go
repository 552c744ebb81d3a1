package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"crypto/rand"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// markerServiceName is the service.name of the resource holding markers.
const markerServiceName = "tailgate-rebalance-guard"

// markerBatch is the most markers sent downstream in one call.
const markerBatch = 1000

// buildMarkers makes one marker span per trace ID: a span of that trace
// carrying the keep and marker attributes, so tail_sampling keeps the
// trace, and the marker itself can be dropped after sampling.
func buildMarkers(ids []pcommon.TraceID, reason string, keepAttr, markerAttr string, now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", markerServiceName)
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	spans.EnsureCapacity(len(ids))
	ts := pcommon.NewTimestampFromTime(now)
	for _, id := range ids {
		sp := spans.AppendEmpty()
		sp.SetTraceID(id)
		var sid, parent pcommon.SpanID
		_, _ = rand.Read(sid[:])
		_, _ = rand.Read(parent[:])
		sid[0] |= 1 // never the invalid all-zero ID
		sp.SetSpanID(sid)
		// A parent, so that a marker is never the trace's root:
		// tail_sampling's decision_wait_after_root_received would decide the
		// trace early on seeing a root, before its other half arrived.
		parent[0] |= 1
		sp.SetParentSpanID(parent)
		sp.SetName("tailgate.rebalance.marker")
		sp.SetKind(ptrace.SpanKindInternal)
		sp.SetStartTimestamp(ts)
		sp.SetEndTimestamp(ts)
		sp.Attributes().PutBool(keepAttr, true)
		sp.Attributes().PutBool(markerAttr, true)
		sp.Attributes().PutStr(reasonAttribute, reason)
	}
	return td
}
