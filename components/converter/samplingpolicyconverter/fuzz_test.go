package samplingpolicyconverter

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.yaml.in/yaml/v3"
)

// FuzzConvert feeds the converter arbitrary YAML as a configuration (the
// user's files and overlays are merged before it runs): it must not panic,
// and whenever it accepts a configuration, every pipeline that runs a
// guard before tail_sampling comes out with the guard's policy first in
// that tail_sampling and its marker filter right after it.
func FuzzConvert(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(f, err)
	for _, path := range append(seeds, filepath.Join("..", "..", "..", "configs", "gateway.yaml")) {
		data, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("service: {pipelines: {traces: {processors: [rebalance_guard, tail_sampling]}}}"))
	f.Add([]byte("processors: {tail_sampling: {policies: 3}, rebalance_guard: [1]}\nservice: {pipelines: {t: {processors: [rebalance_guard, tail_sampling, tail_sampling]}}}"))
	f.Add([]byte("processors: {tail_sampling: {policies: [{name: rebalance_guard}]}}"))

	f.Fuzz(func(t *testing.T, data []byte) {
		var raw map[string]any
		if yaml.Unmarshal(data, &raw) != nil || raw == nil {
			return // the collector refuses what is not a YAML mapping
		}
		conf := confmap.NewFromStringMap(raw)
		if err := convert(t, conf); err != nil {
			return
		}
		out := conf.ToStringMap()
		pipelines, _ := dig(out, "service", "pipelines").(map[string]any)
		for id, p := range pipelines {
			procs, _ := dig(p, "processors").([]any)
			guard := slices.IndexFunc(procs, func(v any) bool { return componentType(str(v)) == guardType })
			sampler := slices.IndexFunc(procs, func(v any) bool { return componentType(str(v)) == "tail_sampling" })
			if guard < 0 || sampler < guard {
				continue
			}
			guardID := str(procs[guard])
			require.Greater(t, len(procs), sampler+1, "pipeline %s: no marker filter after tail_sampling", id)
			require.Equal(t, markerFilterID(guardID), str(procs[sampler+1]), "pipeline %s", id)
			policies, _ := dig(out, "processors", str(procs[sampler]), "policies").([]any)
			require.NotEmpty(t, policies, "pipeline %s: %s has no policies", id, procs[sampler])
			require.Equal(t, guardPolicyName, dig(policies[0], "name"), "pipeline %s: the guard's policy is not first", id)
		}
	})
}

func str(v any) string { s, _ := v.(string); return s }

// dig walks nested maps by key; nil where a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
