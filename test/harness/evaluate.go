package harness

import (
	"fmt"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Outcome counts what happened to the traces of one Kind at the backend.
type Outcome struct {
	Sent       int // traces whose every span the agents accepted
	Complete   int // arrived with every span
	Partial    int // arrived with some spans missing: the failure tailgate exists to prevent
	Lost       int // no span arrived
	SendFailed int // an agent refused a span: left out of the counts above
	// PartialIDs lists the partial traces, for diagnostics.
	PartialIDs []pcommon.TraceID
}

// Evaluation compares the sink's contents with the ground truth.
type Evaluation struct {
	ByKind map[Kind]*Outcome
	// Duplicates counts spans received more than once (retries after a
	// timeout can legitimately duplicate; the backend deduplicates by ID).
	Duplicates int
	// Unknown counts spans whose trace the generator never made.
	Unknown int
}

// Interesting are the kinds tail sampling must keep, every trace whole.
var Interesting = []Kind{Error, Slow}

// Evaluate checks every planned trace against what the backend received
// (the Sink, or a real backend read back through its API).
func Evaluate(plans []TracePlan, sent SendResult, backend Backend) Evaluation {
	ev := Evaluation{ByKind: map[Kind]*Outcome{}}
	for _, k := range Kinds {
		ev.ByKind[k] = &Outcome{}
	}
	known := make(map[pcommon.TraceID]bool, len(plans))
	for i := range plans {
		p := &plans[i]
		known[p.ID] = true
		o := ev.ByKind[p.Kind]
		if sent.FailedTraces[p.ID] {
			o.SendFailed++
			continue
		}
		o.Sent++
		got := backend.SpansOf(p.ID)
		present := 0
		for _, s := range p.Spans {
			if n := got[s.SpanID]; n > 0 {
				present++
				ev.Duplicates += n - 1
			}
		}
		switch {
		case present == len(p.Spans):
			o.Complete++
		case present == 0:
			o.Lost++
		default:
			o.Partial++
			o.PartialIDs = append(o.PartialIDs, p.ID)
		}
	}
	if lister, ok := backend.(interface{ TraceIDs() []pcommon.TraceID }); ok {
		for _, id := range lister.TraceIDs() {
			if !known[id] {
				ev.Unknown += len(backend.SpansOf(id))
			}
		}
	}
	return ev
}

// Breaches lists every way the outcome breaks tailgate's promise: an error
// or slow trace that did not reach the backend complete, or a trace of any
// kind that arrived in part. None means every interesting trace was kept
// whole. The one definition the e2e, live and churn suites all judge by.
func (ev Evaluation) Breaches() []string {
	var out []string
	for _, k := range Kinds {
		o := ev.ByKind[k]
		switch {
		case slices.Contains(Interesting, k) && o.Complete != o.Sent:
			out = append(out, fmt.Sprintf("%s traces: %d of %d complete, %d partial %v, %d lost", k, o.Complete, o.Sent, o.Partial, o.PartialIDs, o.Lost))
		case o.Partial > 0:
			out = append(out, fmt.Sprintf("%s traces: %d arrived partially %v", k, o.Partial, o.PartialIDs))
		}
	}
	return out
}
