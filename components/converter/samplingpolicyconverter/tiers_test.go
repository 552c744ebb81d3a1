package samplingpolicyconverter

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
)

// TestTiersCouplingsHold: a configuration that would unguard a gateway,
// or route a trace's spans to several targets, is refused by the key that
// breaks it; one that keeps both, or defines no guard at all (a plain
// collector), passes.
func TestTiersCouplingsHold(t *testing.T) {
	gateway := func(processors []any) map[string]any {
		return map[string]any{
			"processors": map[string]any{
				"rebalance_guard/dns": map[string]any{}, "rebalance_guard/k8s": map[string]any{},
				"tail_sampling": map[string]any{}, "batch": map[string]any{},
			},
			"service": map[string]any{"pipelines": map[string]any{
				"traces/sampling": map[string]any{"processors": processors},
			}},
		}
	}
	agent := func(routingKey any) map[string]any {
		lb := map[string]any{"resolver": map[string]any{"static": map[string]any{"hostnames": []any{"a:4317"}}}}
		if routingKey != nil {
			lb["routing_key"] = routingKey
		}
		return map[string]any{
			"exporters": map[string]any{"load_balancing/static": lb},
			"service": map[string]any{"pipelines": map[string]any{
				"traces":  map[string]any{"exporters": []any{"load_balancing/static"}},
				"logs/lb": map[string]any{"exporters": []any{"load_balancing/static"}},
			}},
		}
	}
	tests := []struct {
		name    string
		conf    map[string]any
		wantErr string
	}{
		{"a guarded gateway", gateway([]any{"rebalance_guard/dns", "tail_sampling", "batch"}), ""},
		{"a gateway whose overlay dropped the guard", gateway([]any{"tail_sampling", "batch"}),
			"service::pipelines::traces/sampling::processors: tail_sampling runs without a rebalance_guard before it, so a trace split by a change of the gateway set loses a half; put the guard of your resolver (rebalance_guard/dns, rebalance_guard/k8s) before it"},
		{"a plain collector's tail_sampling", map[string]any{
			"processors": map[string]any{"tail_sampling": map[string]any{}},
			"service":    map[string]any{"pipelines": map[string]any{"traces": map[string]any{"processors": []any{"tail_sampling"}}}},
		}, ""},
		{"an agent routing by trace ID, as the default", agent(nil), ""},
		{"an agent routing by trace ID, written out", agent("traceID"), ""},
		{"an agent whose overlay routes by service", agent("service"),
			`exporters::load_balancing/static::routing_key: "service" splits a trace's spans between targets (pipeline traces)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := convert(t, confmap.NewFromStringMap(tt.conf))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}
