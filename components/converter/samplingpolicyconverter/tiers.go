package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/confmap"
)

const loadBalancingType = "load_balancing"

// checkTiers refuses, by name, a configuration that would silently break
// what the two tiers rely on; an overlay merged over a profile can do
// either:
//   - a gateway (a configuration that defines rebalance_guard processors)
//     whose traces reach tail_sampling without a guard before it: traces
//     split by a change of the gateway set would lose a half;
//   - a traces pipeline whose load_balancing exporter routes by anything
//     but the trace ID: a trace's spans would be sampled on several
//     gateways (or land on several backend shards) and arrive in part.
func checkTiers(conf *confmap.Conf, cfg *gatewayConfig) error {
	var errs []error
	var guards []string
	for id := range cfg.processors {
		if componentType(id) == guardType {
			guards = append(guards, id)
		}
	}
	sort.Strings(guards)
	for _, pid := range cfg.pipelineIDs {
		if len(guards) == 0 {
			break
		}
		list := cfg.pipelines[pid]
		ti := slices.IndexFunc(list, func(id string) bool { return componentType(id) == tailSamplingType })
		// A guard after tail_sampling is guardPipelines' to refuse.
		if ti >= 0 && !slices.ContainsFunc(list, func(id string) bool { return componentType(id) == guardType }) {
			errs = append(errs, fmt.Errorf("service::pipelines::%s::processors: %s runs without a rebalance_guard before it, so a trace split by a change of the gateway set loses a half; put the guard of your resolver (%s) before it, or set that guard's enabled: false to run unguarded on purpose",
				pid, list[ti], strings.Join(guards, ", ")))
		}
	}
	exporters := mapAt(conf, "exporters")
	for _, pid := range cfg.pipelineIDs {
		if componentType(pid) != "traces" {
			continue
		}
		pipeline, _ := conf.Get("service::pipelines::" + pid).(map[string]any)
		ids, _ := pipeline["exporters"].([]any)
		for _, raw := range ids {
			id, _ := raw.(string)
			if componentType(id) != loadBalancingType {
				continue
			}
			exporter, _ := exporters[id].(map[string]any)
			if key, _ := exporter["routing_key"].(string); key != "" && key != "traceID" {
				errs = append(errs, fmt.Errorf("exporters::%s::routing_key: %q splits a trace's spans between targets (pipeline %s); tailgate routes spans by trace ID (traceID), so that each gateway or backend shard sees whole traces",
					id, key, pid))
			}
		}
	}
	return errors.Join(errs...)
}
