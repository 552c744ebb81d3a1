package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// validatePolicies refuses policies that would not run as written, naming
// the policy and the key:
//   - each policy is decoded alone with upstream's own types, so a decoding
//     error (a misspelt key inside a policy's section, a value of the wrong
//     type) names its policy;
//   - a key beside name, type and the section of the policy's type is
//     refused: upstream collects such keys for policy extensions and
//     ignores them otherwise, so `latncy: {threshold_ms: 500}` would run a
//     latency policy with no threshold, and a `status_code:` section under
//     a probabilistic policy would silently do nothing;
//   - a drop policy under sampling_strategy span-ingest is refused: there
//     upstream (v0.161.0) defers every keep while a drop policy has not
//     matched, since a later batch could still match it, and finalizes a
//     pending trace as not sampled, so the processor would keep nothing
//     (TestSpanIngestWithADropPolicyKeepsNothing pins this);
//   - then upstream builds the policies as it does when the processor
//     starts (types, duplicate names, OTTL conditions, regular expressions,
//     status codes, stateful policies under span-ingest), which the
//     collector's `validate` never does by itself.
func validatePolicies(ctx context.Context, ts tailSampler) error {
	var errs []error
	decoded := make([]tailsamplingprocessor.PolicyCfg, 0, len(ts.policies))
	for i, raw := range ts.policies {
		m, ok := raw.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("[%d]: a policy is a map with a name and a type, got %T", i, raw))
			continue
		}
		name, _ := m["name"].(string)
		where := fmt.Sprintf("policy %q ([%d])", name, i)
		if name == guardPolicyName {
			errs = append(errs, fmt.Errorf("%s: the name %q is the rebalance guard's keep policy, which tailgate adds itself: choose another", where, guardPolicyName))
			continue
		}
		if err := strayKeys(m, ""); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		var p tailsamplingprocessor.PolicyCfg
		if err := confmap.NewFromStringMap(m).Unmarshal(&p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if p.Type == tailsamplingprocessor.Drop && ts.config["sampling_strategy"] == spanIngest {
			errs = append(errs, fmt.Errorf("%s: a drop policy with sampling_strategy %s keeps no trace (each keep waits until no drop policy can match, and span-ingest finalizes a waiting trace as not sampled): use trace-complete, or express the drop in the other policies", where, spanIngest))
			continue
		}
		decoded = append(decoded, p)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return buildPolicies(ctx, ts, decoded)
}

// spanIngest is tail_sampling's sampling_strategy that decides at ingest.
const spanIngest = "span-ingest"

// strayKeys reports keys of a policy (and of its sub-policies) other than
// name, type and the section named after its type, upstream's convention
// for every policy type (latency: {...}, composite: {...}, ...).
func strayKeys(policy map[string]any, path string) error {
	typ, _ := policy["type"].(string)
	var stray []string
	for k := range policy {
		if k != "name" && k != "type" && k != typ {
			stray = append(stray, path+k)
		}
	}
	if len(stray) > 0 {
		sort.Strings(stray)
		return fmt.Errorf("unknown key %s: a policy of type %q reads name, type and %s", strings.Join(stray, ", "), typ, typ)
	}
	section, _ := policy[typ].(map[string]any)
	keys := make([]string, 0, len(section))
	for k := range section {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasSuffix(k, "_sub_policy") {
			continue
		}
		subs, ok := section[k].([]any)
		if !ok {
			subs = []any{section[k]} // not's single sub-policy
		}
		for i, sub := range subs {
			if m, ok := sub.(map[string]any); ok {
				if err := strayKeys(m, fmt.Sprintf("%s%s.%s[%d].", path, typ, k, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// buildPolicies starts a tail_sampling processor with the policies (and
// the sampling strategy, which restricts them) and stops it again:
// upstream builds policies only when the processor starts, and its errors
// name the policy.
func buildPolicies(ctx context.Context, ts tailSampler, policies []tailsamplingprocessor.PolicyCfg) error {
	factory := tailsamplingprocessor.NewFactory()
	cfg := factory.CreateDefaultConfig().(*tailsamplingprocessor.Config)
	if strategy, ok := ts.config["sampling_strategy"]; ok {
		if err := confmap.NewFromStringMap(map[string]any{"sampling_strategy": strategy}).Unmarshal(cfg, confmap.WithIgnoreUnused()); err != nil {
			return nil // the collector reports the processor's own configuration error
		}
	}
	cfg.PolicyCfgs = policies
	var id component.ID
	if err := id.UnmarshalText([]byte(ts.id)); err != nil {
		return nil // the collector reports a malformed component ID
	}
	set := processor.Settings{
		ID: id,
		TelemetrySettings: component.TelemetrySettings{
			Logger: zap.NewNop(), TracerProvider: nooptrace.NewTracerProvider(),
			MeterProvider: noopmetric.NewMeterProvider(), Resource: pcommon.NewResource(),
		},
		BuildInfo: component.NewDefaultBuildInfo(),
	}
	discard, _ := consumer.NewTraces(func(context.Context, ptrace.Traces) error { return nil })
	p, err := factory.CreateTraces(ctx, set, cfg, discard)
	if err != nil {
		return nil // not a policy error: the collector reports it
	}
	startErr := p.Start(ctx, noHost{})
	if err := p.Shutdown(ctx); err != nil && startErr == nil {
		return err
	}
	return startErr
}

// noHost is a host with no extensions: policy extensions are not part of
// this distribution (a policy naming one is refused as an unknown type).
type noHost struct{}

func (noHost) GetExtensions() map[component.ID]component.Component { return nil }
