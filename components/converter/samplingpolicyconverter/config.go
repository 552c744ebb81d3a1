package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"

import (
	"fmt"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/confmap"
)

// gatewayConfig is what the converter reads of a collector configuration,
// after every ${...} reference was expanded.
type gatewayConfig struct {
	// processors by component ID, as written.
	processors map[string]any
	// pipelines: the processor IDs of each pipeline, in order, by pipeline ID
	// (sorted in pipelineIDs, so that errors and patches are deterministic).
	pipelines   map[string][]string
	pipelineIDs []string
	// tailSamplers: every tail_sampling processor, sorted by ID.
	tailSamplers []tailSampler
}

type tailSampler struct {
	id       string
	config   map[string]any // its configuration, as written (nil when empty)
	policies []any
}

// componentType is the type part of a component ID ("tail_sampling" of
// "tail_sampling/eu").
func componentType(id string) string {
	t, _, _ := strings.Cut(id, "/")
	return t
}

func read(conf *confmap.Conf) (*gatewayConfig, error) {
	cfg := &gatewayConfig{processors: mapAt(conf, "processors"), pipelines: map[string][]string{}}
	for id, raw := range mapAt(conf, "service::pipelines") {
		pipeline, _ := raw.(map[string]any)
		list, _ := pipeline["processors"].([]any)
		for i, p := range list {
			s, ok := p.(string)
			if !ok {
				return nil, fmt.Errorf("service::pipelines::%s::processors[%d]: a processor ID is a string, got %T", id, i, p)
			}
			cfg.pipelines[id] = append(cfg.pipelines[id], s)
		}
		cfg.pipelineIDs = append(cfg.pipelineIDs, id)
	}
	sort.Strings(cfg.pipelineIDs)
	for id, raw := range cfg.processors {
		if componentType(id) != tailSamplingType {
			continue
		}
		ts := tailSampler{id: id}
		ts.config, _ = raw.(map[string]any)
		if p, ok := ts.config["policies"]; ok && p != nil {
			list, ok := p.([]any)
			if !ok {
				return nil, fmt.Errorf("processors::%s::policies: must be a list of policies (the policies file holds a YAML list), got %T", id, p)
			}
			ts.policies = list
		}
		cfg.tailSamplers = append(cfg.tailSamplers, ts)
	}
	sort.Slice(cfg.tailSamplers, func(i, j int) bool { return cfg.tailSamplers[i].id < cfg.tailSamplers[j].id })
	return cfg, nil
}

// mapAt is the map at key, or nil where there is none (the collector
// reports a malformed section itself).
func mapAt(conf *confmap.Conf, key string) map[string]any {
	m, _ := conf.Get(key).(map[string]any)
	return m
}
