package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/confmap"

	"github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
)

const (
	tailSamplingType = "tail_sampling"
	guardType        = "rebalance_guard"
	// guardPolicyName names the keep policy the converter puts first in a
	// guarded tail_sampling; a user's policy may not take it.
	guardPolicyName = "rebalance_guard"
)

// markerFilterID is the filter processor that drops the marker spans of
// guard guardID after sampling.
func markerFilterID(guardID string) string {
	return "filter/" + strings.ReplaceAll(guardID, "/", "_") + "_markers"
}

// guardPatch completes the guarded pipelines of a configuration.
type guardPatch struct {
	policies  map[string][]any          // tail_sampling ID -> its policies, the guard's first
	guards    map[string]map[string]any // guard ID -> the keys it takes from its tail_sampling
	filters   map[string]map[string]any // marker filter ID -> its configuration
	pipelines map[string][]any          // pipeline ID -> its processors, marker filter included
}

// apply writes the patch into conf. The lists it changes are deleted
// first: with the collector's merge-append feature gate on, a merge would
// append to them instead of replacing them.
func (p *guardPatch) apply(conf *confmap.Conf) error {
	patch := map[string]any{}
	set := func(value any, path ...string) {
		conf.Delete(strings.Join(path, confmap.KeyDelimiter))
		m := patch
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[path[len(path)-1]] = value
	}
	for id, policies := range p.policies {
		set(policies, "processors", id, "policies")
	}
	for id, filter := range p.filters {
		set(filter, "processors", id)
	}
	for id, keys := range p.guards {
		for key, value := range keys {
			set(value, "processors", id, key)
		}
	}
	for id, processors := range p.pipelines {
		set(processors, "service", "pipelines", id, "processors")
	}
	return conf.Merge(confmap.NewFromStringMap(patch))
}

// guardPipelines returns the patch that completes every pipeline in which
// a rebalance_guard precedes a tail_sampling (nil when there is none):
//   - the guard's keep policy first in that tail_sampling's policies: both
//     halves of a split trace are kept whatever the other policies decide
//     (sample_on_first_match included), unless a drop policy matches;
//   - right after the tail_sampling, a filter dropping the guard's marker
//     spans, which exist only to carry the keep attribute to it;
//   - the guard's decision_wait and num_traces, from that tail_sampling's
//     (followedKeys), so that an overlay changing tail_sampling's cannot
//     leave the guard's windows behind.
//
// They are the guard's half of a contract with tail_sampling and the
// filter; living in the binary instead of in the profile, no policies file
// and no edited profile can lose them.
func guardPipelines(cfg *gatewayConfig) (*guardPatch, error) {
	p := &guardPatch{policies: map[string][]any{}, guards: map[string]map[string]any{}, filters: map[string]map[string]any{}, pipelines: map[string][]any{}}
	keepOf := map[string]string{} // tail_sampling ID -> keep attribute its guard policy reads
	var errs []error
	for _, pid := range cfg.pipelineIDs {
		list := cfg.pipelines[pid]
		gi := slices.IndexFunc(list, func(id string) bool { return componentType(id) == guardType })
		ti := slices.IndexFunc(list, func(id string) bool { return componentType(id) == tailSamplingType })
		if gi < 0 || ti < 0 {
			continue
		}
		if ti < gi {
			errs = append(errs, fmt.Errorf("service::pipelines::%s::processors: %s must come before %s: it marks the spans %s decides on", pid, list[gi], list[ti], list[ti]))
			continue
		}
		guardID, tsID := list[gi], list[ti]
		keepAttr, markerAttr := guardAttributes(cfg.processors[guardID])
		if keep, seen := keepOf[tsID]; !seen {
			keepOf[tsID] = keepAttr
			ts, _ := cfg.processors[tsID].(map[string]any)
			policies, _ := ts["policies"].([]any)
			p.policies[tsID] = append([]any{guardPolicy(keepAttr)}, policies...)
		} else if keep != keepAttr {
			errs = append(errs, fmt.Errorf("processors::%s: the guards before it in several pipelines must use one keep_attribute, got %q and %q", tsID, keep, keepAttr))
			continue
		}
		follow, err := followTailSampling(guardID, tsID, cfg.processors[guardID], cfg.processors[tsID])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(follow) > 0 {
			p.guards[guardID] = follow
		}
		filterID := markerFilterID(guardID)
		if _, taken := cfg.processors[filterID]; taken {
			errs = append(errs, fmt.Errorf("processors::%s: this ID is reserved for the filter that drops %s's marker spans", filterID, guardID))
			continue
		}
		p.filters[filterID] = markerFilter(markerAttr)
		p.pipelines[pid] = slices.Insert(toAny(list), ti+1, any(filterID))
	}
	if err := errors.Join(errs...); err != nil || len(p.pipelines) == 0 {
		return nil, err
	}
	return p, nil
}

// followedKeys are the tail_sampling settings a guard must share with the
// tail_sampling it precedes: its windows are multiples of decision_wait,
// and its bound on tracked traces scales num_traces. The guard's defaults
// are tail_sampling's (30s, 50000).
var followedKeys = []string{"decision_wait", "num_traces"}

// followTailSampling returns the followedKeys tail_sampling tsID sets,
// for guard guardID to take. A guard that sets one of them itself must set
// tail_sampling's value: two values would be two windows, and the guard
// would forget undecided traces.
func followTailSampling(guardID, tsID string, guardRaw, tsRaw any) (map[string]any, error) {
	guard, _ := guardRaw.(map[string]any)
	ts, _ := tsRaw.(map[string]any)
	follow := map[string]any{}
	var errs []error
	for _, key := range followedKeys {
		want, set := ts[key]
		if !set || want == nil {
			continue
		}
		if own, ok := guard[key]; ok && own != nil && !sameSetting(own, want) {
			errs = append(errs, fmt.Errorf("processors::%s::%s: %v, but processors::%s::%s is %v; the guard follows the tail_sampling it precedes, so leave %s out of the guard", guardID, key, own, tsID, key, want, key))
			continue
		}
		follow[key] = want
	}
	return follow, errors.Join(errs...)
}

// sameSetting compares two values as written: durations by their length
// ("10s" and "10000ms" agree), anything else by its text.
func sameSetting(a, b any) bool {
	as, bs := fmt.Sprint(a), fmt.Sprint(b)
	if da, err := time.ParseDuration(as); err == nil {
		if db, err := time.ParseDuration(bs); err == nil {
			return da == db
		}
	}
	return as == bs
}

// guardAttributes are the keep and marker attributes of a guard's
// configuration, the guard's defaults where it sets none. Only these two
// keys are read: the configuration is the expanded one, whose values the
// collector, not this converter, decodes into the guard's types (a port
// written as ${env:...} reaches here as an int), and the guard validates
// them itself.
func guardAttributes(raw any) (keep, marker string) {
	defaults := rebalanceguardprocessor.NewFactory().CreateDefaultConfig().(*rebalanceguardprocessor.Config)
	keep, marker = defaults.KeepAttribute, defaults.MarkerAttribute
	m, _ := raw.(map[string]any)
	if v, ok := m["keep_attribute"].(string); ok && v != "" {
		keep = v
	}
	if v, ok := m["marker_attribute"].(string); ok && v != "" {
		marker = v
	}
	return keep, marker
}

func guardPolicy(keepAttribute string) map[string]any {
	return map[string]any{
		"name":              guardPolicyName,
		"type":              "boolean_attribute",
		"boolean_attribute": map[string]any{"key": keepAttribute, "value": true},
	}
}

func markerFilter(markerAttribute string) map[string]any {
	return map[string]any{
		"error_mode":       "ignore",
		"trace_conditions": []any{fmt.Sprintf("span.attributes[%q] == true", markerAttribute)},
	}
}

func toAny(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
