package harness

import (
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one read of a collector's Prometheus endpoint (its internal
// telemetry on the telemetry port, or RED metrics on the exporter port).
type Scrape map[string]*dto.MetricFamily

// ScrapeMetrics reads http://127.0.0.1:<port>/metrics.
func ScrapeMetrics(port int) (Scrape, error) {
	return ScrapeMetricsAt(fmt.Sprintf("127.0.0.1:%d", port))
}

// ScrapeMetricsAt reads http://<addr>/metrics.
func ScrapeMetricsAt(addr string) (Scrape, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/metrics", addr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	return Scrape(families), nil
}

// Sum adds up the counter, gauge or untyped samples of a metric whose labels
// include all of the given label pairs ("name", "value", ...).
func (s Scrape) Sum(metric string, labelPairs ...string) float64 {
	fam, ok := s.family(metric)
	if !ok {
		return 0
	}
	var total float64
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labelPairs) {
			continue
		}
		total += value(m)
	}
	return total
}

// LabelValues returns the sums of a metric grouped by one label's values.
func (s Scrape) LabelValues(metric, label string, labelPairs ...string) map[string]float64 {
	out := map[string]float64{}
	fam, ok := s.family(metric)
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labelPairs) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += value(m)
			}
		}
	}
	return out
}

// value is a counter, gauge or untyped sample's value (0 for other types).
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// family finds a metric by name, with or without the `_total` suffix that
// Prometheus naming adds to counters depending on the translation strategy.
func (s Scrape) family(metric string) (*dto.MetricFamily, bool) {
	if fam, ok := s[metric]; ok {
		return fam, true
	}
	fam, ok := s[metric+"_total"]
	return fam, ok
}
