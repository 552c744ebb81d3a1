package harness

import (
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

// Evaluate checks every planned trace against what the sink received.
func Evaluate(plans []TracePlan, sent SendResult, sink *Sink) Evaluation {
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
		got := sink.SpansOf(p.ID)
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
	for _, id := range sink.TraceIDs() {
		if !known[id] {
			ev.Unknown += len(sink.SpansOf(id))
		}
	}
	return ev
}

// PipelineCounters are the collectors' own counts of loss, summed over
// every process of a topology, from their internal telemetry.
type PipelineCounters struct {
	ReceiverRefused   float64 // refused by a receiver (e.g. memory_limiter pressure)
	ExporterFailed    float64 // export gave up after retries
	EnqueueFailed     float64 // sending queue full
	DroppedTooEarly   float64 // tail_sampling evicted an undecided trace (num_traces too small)
	GatewayNewTraces  []float64
	KeptByPolicy      map[string]float64
	GatewayScrapeErrs []error
}

// Internal telemetry metric names of the pinned collector version (Scrape
// also finds them with the `_total` suffix some exporter settings add).
const (
	MetricReceiverRefused = "otelcol_receiver_refused_spans"
	MetricExporterFailed  = "otelcol_exporter_send_failed_spans"
	MetricEnqueueFailed   = "otelcol_exporter_enqueue_failed_spans"
	MetricDroppedTooEarly = "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"
	MetricNewTraces       = "otelcol_processor_tail_sampling_new_trace_id_received"
	MetricTracesSampled   = "otelcol_processor_tail_sampling_count_traces_sampled"
)

// Counters scrapes every process of the topology.
func (t *Topology) Counters() PipelineCounters {
	c := PipelineCounters{KeptByPolicy: map[string]float64{}}
	for _, n := range t.Nodes() {
		s, err := ScrapeMetrics(n.Ports.Telemetry)
		if err != nil {
			c.GatewayScrapeErrs = append(c.GatewayScrapeErrs, err)
			if n.Profile == "gateway" {
				c.GatewayNewTraces = append(c.GatewayNewTraces, 0)
			}
			continue
		}
		c.ReceiverRefused += s.Sum(MetricReceiverRefused)
		c.ExporterFailed += s.Sum(MetricExporterFailed)
		c.EnqueueFailed += s.Sum(MetricEnqueueFailed)
		if n.Profile == "gateway" {
			c.DroppedTooEarly += s.Sum(MetricDroppedTooEarly)
			c.GatewayNewTraces = append(c.GatewayNewTraces, s.Sum(MetricNewTraces))
			for policy, v := range s.LabelValues(MetricTracesSampled, "policy", "sampled", "true") {
				c.KeptByPolicy[policy] += v
			}
		}
	}
	return c
}

// MetricQueueSize is the current size of an exporter's sending queue.
const MetricQueueSize = "otelcol_exporter_queue_size"

// QueuedItems sums the sending queues of every running process; processes
// whose telemetry cannot be read count as -1 so callers keep waiting.
func (t *Topology) QueuedItems() float64 {
	var total float64
	for _, n := range t.Nodes() {
		if n.Proc == nil || n.Proc.Exited() {
			continue
		}
		s, err := ScrapeMetrics(n.Ports.Telemetry)
		if err != nil {
			return -1
		}
		total += s.Sum(MetricQueueSize)
	}
	return total
}
