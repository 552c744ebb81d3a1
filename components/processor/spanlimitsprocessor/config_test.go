package spanlimitsprocessor

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	defaults := createDefaultConfig().(*Config)
	tests := []struct {
		id      component.ID
		want    *Config
		wantErr string
	}{
		{id: component.NewID(metadata.Type), want: defaults},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: &Config{
			MaxSpanSize: 2 << 20, AttributeValueLengthLimit: 1024,
			AttributeCountLimit: 64, EventCountLimit: 32, LinkCountLimit: 16, MaxServiceNames: 50,
		}},
		{id: component.NewIDWithName(metadata.Type, "too_small"), wantErr: "max_span_size must be at least 16384 bytes, got 1000"},
		{id: component.NewIDWithName(metadata.Type, "value_over_span"), wantErr: "attribute_value_length_limit (65536) must be below max_span_size (65536)"},
		{id: component.NewIDWithName(metadata.Type, "negative"), wantErr: "event_count_limit must not be negative, got -1"},
		{id: component.NewIDWithName(metadata.Type, "zero_value_length"), wantErr: "attribute_value_length_limit must be positive, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}
