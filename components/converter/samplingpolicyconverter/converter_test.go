package samplingpolicyconverter

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

func convert(t *testing.T, conf *confmap.Conf) error {
	t.Helper()
	return NewFactory().Create(confmap.ConverterSettings{}).Convert(context.Background(), conf)
}

// TestConvert: a guarded pipeline gets the guard's keep policy first and
// its marker filter right after tail_sampling, with the guard's attribute
// names; anything else is left as written.
func TestConvert(t *testing.T) {
	for _, name := range []string{"guarded", "own_attributes", "unguarded"} {
		t.Run(name, func(t *testing.T) {
			conf, err := confmaptest.LoadConf(filepath.Join("testdata", name+".yaml"))
			require.NoError(t, err)
			want, err := confmaptest.LoadConf(filepath.Join("testdata", name+"_expected.yaml"))
			require.NoError(t, err)
			require.NoError(t, convert(t, conf))
			assert.Equal(t, want.ToStringMap(), conf.ToStringMap())
		})
	}
}

// TestConfigurationsCannotTakeTheGuardsNames: a configuration that already
// holds what the converter adds (a policy named after the guard's) is
// refused, not doubled.
func TestConfigurationsCannotTakeTheGuardsNames(t *testing.T) {
	conf, err := confmaptest.LoadConf(filepath.Join("testdata", "guarded_expected.yaml"))
	require.NoError(t, err)
	err = convert(t, conf)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `policy "rebalance_guard" ([0])`)
}

func TestGuardAfterTailSamplingIsRefused(t *testing.T) {
	conf := confmap.NewFromStringMap(map[string]any{
		"processors": map[string]any{"rebalance_guard": map[string]any{}, "tail_sampling": map[string]any{}},
		"service": map[string]any{"pipelines": map[string]any{"traces": map[string]any{
			"processors": []any{"tail_sampling", "rebalance_guard"},
		}}},
	})
	err := convert(t, conf)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "service::pipelines::traces::processors: rebalance_guard must come before tail_sampling")
}

func TestMarkerFilterIDIsReserved(t *testing.T) {
	conf, err := confmaptest.LoadConf(filepath.Join("testdata", "guarded.yaml"))
	require.NoError(t, err)
	require.NoError(t, conf.Merge(confmap.NewFromStringMap(map[string]any{"processors": map[string]any{
		"filter/rebalance_guard_k8s_markers": map[string]any{"error_mode": "ignore"},
	}})))
	err = convert(t, conf)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "processors::filter/rebalance_guard_k8s_markers: this ID is reserved")
}

// TestBadPoliciesAreRefusedByName: each policy error names the
// tail_sampling processor, the policy and the key at fault. Upstream alone
// accepts every one of these at `validate`, and the stray keys even at
// start.
func TestBadPoliciesAreRefusedByName(t *testing.T) {
	tests := []struct {
		name     string
		strategy string
		policies string
		want     []string
	}{
		{
			name:     "misspelt section",
			policies: `[{name: slow, type: latency, latncy: {threshold_ms: 500}}]`,
			want:     []string{`processors::tail_sampling::policies: policy "slow" ([0]): unknown key latncy: a policy of type "latency" reads name, type and latency`},
		},
		{
			name:     "section of another type",
			policies: `[{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: share, type: probabilistic, status_code: {status_codes: [OK]}}]`,
			want:     []string{`policy "share" ([1]): unknown key status_code`},
		},
		{
			name:     "misspelt key inside a section",
			policies: `[{name: slow, type: latency, latency: {treshold_ms: 500}}]`,
			want:     []string{`policy "slow" ([0])`, "treshold_ms"},
		},
		{
			name:     "value of the wrong type",
			policies: `[{name: share, type: probabilistic, probabilistic: {sampling_percentage: ten}}]`,
			want:     []string{`policy "share" ([0])`, "sampling_percentage"},
		},
		{
			name:     "stray key in a sub-policy",
			policies: `[{name: cheap, type: and, and: {and_sub_policy: [{name: svc, type: string_attribute, string_atribute: {key: service.name, values: [a]}}]}}]`,
			want:     []string{`policy "cheap" ([0]): unknown key and.and_sub_policy[0].string_atribute`},
		},
		{
			name:     "unknown type",
			policies: `[{name: errors, type: status}]`,
			want:     []string{`"errors"`, "unknown sampling policy type status"},
		},
		{
			name:     "bad OTTL condition",
			policies: `[{name: route, type: ottl_condition, ottl_condition: {span: ['attributes["http.route"] === "/cart"']}}]`,
			want:     []string{`"route"`},
		},
		{
			name:     "bad status code",
			policies: `[{name: errors, type: status_code, status_code: {status_codes: [FAILED]}}]`,
			want:     []string{`"errors"`, "FAILED"},
		},
		{
			name:     "duplicate name",
			policies: `[{name: a, type: always_sample}, {name: a, type: trace_flags}]`,
			want:     []string{`duplicate policy name "a"`},
		},
		{
			name:     "no name",
			policies: `[{type: always_sample}]`,
			want:     []string{"policy name cannot be empty"},
		},
		{
			name:     "not a policy",
			policies: `[errors]`,
			want:     []string{"[0]: a policy is a map with a name and a type, got string"},
		},
		{
			name:     "not a list",
			policies: `{name: errors, type: always_sample}`,
			want:     []string{"processors::tail_sampling::policies: must be a list of policies"},
		},
		{
			name:     "stateful policy under span-ingest",
			strategy: "span-ingest",
			policies: `[{name: cap, type: rate_limiting, rate_limiting: {spans_per_second: 100}}]`,
			want:     []string{`policy "cap" is stateful`},
		},
		{
			name:     "drop policy under span-ingest",
			strategy: "span-ingest",
			policies: `[{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: no-health, type: drop, drop: {drop_sub_policy: [{name: health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}}]`,
			want:     []string{`policy "no-health" ([1]): a drop policy with sampling_strategy span-ingest keeps no trace`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := confmaptest.LoadConf(filepath.Join("testdata", "guarded.yaml"))
			require.NoError(t, err)
			policies, err := confmap.NewRetrievedFromYAML([]byte(tt.policies))
			require.NoError(t, err)
			raw, err := policies.AsRaw()
			require.NoError(t, err)
			require.True(t, conf.Delete("processors::tail_sampling::policies"))
			ts := map[string]any{"policies": raw}
			if tt.strategy != "" {
				ts["sampling_strategy"] = tt.strategy
			}
			require.NoError(t, conf.Merge(confmap.NewFromStringMap(map[string]any{"processors": map[string]any{"tail_sampling": ts}})))
			err = convert(t, conf)
			require.Error(t, err)
			t.Log(err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestGoodPoliciesPass: the policy library's shapes (composite, and, not,
// drop, OTTL, a rate limit) are accepted.
func TestGoodPoliciesPass(t *testing.T) {
	conf, err := confmaptest.LoadConf(filepath.Join("testdata", "library.yaml"))
	require.NoError(t, err)
	require.NoError(t, convert(t, conf))
}

// TestSpanIngestWithADropPolicyKeepsNothing pins the upstream behaviour the
// refusal of drop policies under span-ingest rests on: the pinned
// tail_sampling, deciding at ingest, keeps an error trace, and keeps
// nothing once a drop policy that does not match it comes first.
func TestSpanIngestWithADropPolicyKeepsNothing(t *testing.T) {
	errors := tailsamplingprocessor.PolicyCfg{}
	errors.Name, errors.Type = "errors", tailsamplingprocessor.StatusCode
	errors.StatusCodeCfg.StatusCodes = []string{"ERROR"}
	drop := tailsamplingprocessor.PolicyCfg{}
	drop.Name, drop.Type = "no-health", tailsamplingprocessor.Drop
	health := tailsamplingprocessor.AndSubPolicyCfg{}
	health.Name, health.Type = "health", tailsamplingprocessor.StringAttribute
	health.StringAttributeCfg.Key, health.StringAttributeCfg.Values = "http.route", []string{"/healthz"}
	drop.DropCfg.SubPolicyCfg = []tailsamplingprocessor.AndSubPolicyCfg{health}

	for _, tt := range []struct {
		name     string
		policies []tailsamplingprocessor.PolicyCfg
		kept     bool
	}{
		{"errors alone", []tailsamplingprocessor.PolicyCfg{errors}, true},
		{"errors after a drop policy", []tailsamplingprocessor.PolicyCfg{drop, errors}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			factory := tailsamplingprocessor.NewFactory()
			cfg := factory.CreateDefaultConfig().(*tailsamplingprocessor.Config)
			require.NoError(t, confmap.NewFromStringMap(map[string]any{"sampling_strategy": "span-ingest", "decision_wait": "1s"}).Unmarshal(cfg, confmap.WithIgnoreUnused()))
			cfg.PolicyCfgs = tt.policies
			sink := new(consumertest.TracesSink)
			p, err := factory.CreateTraces(context.Background(), processortest.NewNopSettings(factory.Type()), cfg, sink)
			require.NoError(t, err)
			require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
			td := ptrace.NewTraces()
			span := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			span.SetTraceID(pcommon.TraceID{1, 2, 3})
			span.SetSpanID(pcommon.SpanID{1})
			span.Status().SetCode(ptrace.StatusCodeError)
			require.NoError(t, p.ConsumeTraces(context.Background(), td))
			// Past decision_wait and the cleanup tick after it, then shut
			// down, which finalizes whatever is still pending.
			time.Sleep(2500 * time.Millisecond)
			require.NoError(t, p.Shutdown(context.Background()))
			assert.Equal(t, map[bool]int{true: 1, false: 0}[tt.kept], sink.SpanCount())
		})
	}
}

// TestGuardFollowsTailSampling: the guard takes decision_wait and
// num_traces from the tail_sampling it precedes, so an overlay that sets
// only tail_sampling's moves the guard's windows with it; a guard that
// sets a different value itself is refused by both keys.
func TestGuardFollowsTailSampling(t *testing.T) {
	gateway := func(guard, ts map[string]any) map[string]any {
		return map[string]any{
			"processors": map[string]any{"rebalance_guard/static": guard, "tail_sampling": ts},
			"service": map[string]any{"pipelines": map[string]any{
				"traces/sampling": map[string]any{"processors": []any{"rebalance_guard/static", "tail_sampling"}},
			}},
		}
	}
	tests := []struct {
		name      string
		guard, ts map[string]any
		want      map[string]any // the guard's followed keys after conversion
		wantErr   string
	}{
		{"taken from tail_sampling", map[string]any{}, map[string]any{"decision_wait": "4s", "num_traces": 900},
			map[string]any{"decision_wait": "4s", "num_traces": 900}, ""},
		{"tail_sampling's defaults stay the guard's", map[string]any{}, map[string]any{},
			map[string]any{"decision_wait": nil, "num_traces": nil}, ""},
		{"the same value written twice", map[string]any{"decision_wait": "10000ms"}, map[string]any{"decision_wait": "10s"},
			map[string]any{"decision_wait": "10s"}, ""},
		{"a guard of its own mind", map[string]any{"decision_wait": "30s"}, map[string]any{"decision_wait": "10s"}, nil,
			"processors::rebalance_guard/static::decision_wait: 30s, but processors::tail_sampling::decision_wait is 10s"},
		{"a guard sized apart", map[string]any{"num_traces": 1000}, map[string]any{"num_traces": 28000}, nil,
			"processors::rebalance_guard/static::num_traces: 1000, but processors::tail_sampling::num_traces is 28000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := confmap.NewFromStringMap(gateway(tt.guard, tt.ts))
			err := convert(t, conf)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			for key, want := range tt.want {
				assert.Equal(t, want, conf.Get("processors::rebalance_guard/static::"+key), key)
			}
		})
	}
}
