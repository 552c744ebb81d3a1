package mtlsserverextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		want    *Config
		wantErr []string // substrings of the validation error: each names a key
	}{
		{name: "off", want: createDefaultConfig()},
		{name: "disabled", want: createDefaultConfig()},
		{name: "on", want: &Config{
			TLS: configoptional.Some(configtls.ServerConfig{
				Config: configtls.Config{
					CertFile: "/etc/tailgate/tls/tls.crt", KeyFile: "/etc/tailgate/tls/tls.key", ReloadInterval: time.Minute,
				},
				ClientCAFile: "/etc/tailgate/tls/ca.crt", ReloadClientCAFile: true,
			}),
			RefusalLogInterval: 30 * time.Second,
		}},
		{name: "no_client_ca", wantErr: []string{"tls::client_ca_file: required"}},
		{name: "no_certificate", wantErr: []string{"tls::cert_file: required", "tls::key_file: required"}},
		{name: "bad_version", wantErr: []string{"tls: ", "1.9"}},
		{name: "bad_interval", wantErr: []string{"refusal_log_interval must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.name).String())
			require.NoError(t, err)
			cfg := NewFactory().CreateDefaultConfig()
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, want := range tt.wantErr {
					assert.ErrorContains(t, err, want)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}
