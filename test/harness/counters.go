package harness

import "strings"

// PipelineCounters are the collectors' own counts of loss, summed over
// every process of a topology, from their internal telemetry.
type PipelineCounters struct {
	ReceiverRefused  float64 // refused by a receiver (e.g. memory_limiter pressure)
	ExporterFailed   float64 // export gave up after retries
	EnqueueFailed    float64 // sending queue full
	DroppedTooEarly  float64 // tail_sampling evicted an undecided trace (num_traces too small)
	GatewaysSent     float64 // spans the gateways exported to their backends (once per backend)
	GatewayNewTraces []float64
	KeptByPolicy     map[string]float64
	// ReservedRemoved: received spans that carried the guard's attributes,
	// which the gateways removed.
	ReservedRemoved float64
	// HandshakesRefused are the gateways' refused TLS handshakes by reason,
	// HandshakesAccepted the accepted ones (mtls_server).
	HandshakesRefused  map[string]float64
	HandshakesAccepted float64
	GatewayScrapeErrs  []error
}

// Internal telemetry metric names of the pinned collector version (Scrape
// also finds them with the `_total` suffix some exporter settings add).
const (
	MetricReceiverAccepted = "otelcol_receiver_accepted_spans"
	MetricExporterSent     = "otelcol_exporter_sent_spans"
	MetricReceiverRefused  = "otelcol_receiver_refused_spans"
	MetricExporterFailed   = "otelcol_exporter_send_failed_spans"
	MetricEnqueueFailed    = "otelcol_exporter_enqueue_failed_spans"
	MetricDroppedTooEarly  = "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"
	MetricNewTraces        = "otelcol_processor_tail_sampling_new_trace_id_received"
	MetricTracesSampled    = "otelcol_processor_tail_sampling_count_traces_sampled"
	// MetricQueueSize is the current size of an exporter's sending queue.
	MetricQueueSize = "otelcol_exporter_queue_size"
	// rebalance_guard's own telemetry (components/processor/rebalanceguardprocessor/metadata.yaml).
	MetricGuardRingMembers     = "otelcol_processor_rebalance_guard_ring_members"
	MetricGuardSelfInRing      = "otelcol_processor_rebalance_guard_self_in_ring"
	MetricGuardSpansNotOwned   = "otelcol_processor_rebalance_guard_spans_not_owned"
	MetricGuardReservedRemoved = "otelcol_processor_rebalance_guard_spans_reserved_attributes_removed"
	// mtls_server's (components/extension/mtlsserverextension/metadata.yaml).
	MetricHandshakesRefused  = "otelcol_extension_mtls_server_handshakes_refused"
	MetricHandshakesAccepted = "otelcol_extension_mtls_server_handshakes_accepted"
)

// Counters scrapes every process of the topology.
func (t *Topology) Counters() PipelineCounters {
	c := PipelineCounters{KeptByPolicy: map[string]float64{}, HandshakesRefused: map[string]float64{}}
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
			c.ReservedRemoved += s.Sum(MetricGuardReservedRemoved)
			c.GatewayNewTraces = append(c.GatewayNewTraces, s.Sum(MetricNewTraces))
			for exporter, v := range s.LabelValues(MetricExporterSent, "exporter") {
				if strings.Contains(exporter, "/backend") {
					c.GatewaysSent += v
				}
			}
			for policy, v := range s.LabelValues(MetricTracesSampled, "policy", "sampled", "true") {
				c.KeptByPolicy[policy] += v
			}
			for reason, v := range s.LabelValues(MetricHandshakesRefused, "reason") {
				c.HandshakesRefused[reason] += v
			}
			c.HandshakesAccepted += s.Sum(MetricHandshakesAccepted)
		}
	}
	return c
}

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
