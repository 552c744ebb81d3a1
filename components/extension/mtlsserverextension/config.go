package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
)

// Config of the mtls_server extension.
type Config struct {
	// TLS is upstream's server TLS configuration, the keys of a receiver's
	// `tls` (cert_file, key_file, client_ca_file, client_ca_file_reload,
	// reload_interval, min_version, ...). Absent or `enabled: false`, the
	// extension adds nothing and the server stays plaintext, so one profile
	// serves both modes. Present, client_ca_file is required: the point is
	// that only clients holding a certificate of that CA may write.
	TLS configoptional.Optional[configtls.ServerConfig] `mapstructure:"tls"`

	// RefusalLogInterval bounds the refusal log: at most one line per
	// reason per interval, counting the refusals since the last line, so a
	// client retrying in a loop cannot flood the log. The metric counts
	// every refusal.
	RefusalLogInterval time.Duration `mapstructure:"refusal_log_interval"`

	_ struct{}
}

func createDefaultConfig() *Config {
	return &Config{RefusalLogInterval: 10 * time.Second}
}

// Validate names the key at fault.
func (c *Config) Validate() error {
	var errs []error
	if c.RefusalLogInterval <= 0 {
		errs = append(errs, errors.New("refusal_log_interval must be positive"))
	}
	if tls := c.TLS.Get(); tls != nil {
		if tls.CertFile == "" && tls.CertPem == "" {
			errs = append(errs, errors.New("tls::cert_file: required (or cert_pem): the certificate this server presents"))
		}
		if tls.KeyFile == "" && tls.KeyPem == "" {
			errs = append(errs, errors.New("tls::key_file: required (or key_pem): the key of cert_file"))
		}
		if tls.ClientCAFile == "" {
			errs = append(errs, errors.New("tls::client_ca_file: required: the CA whose certificates clients must present (without it any client could write)"))
		}
		if err := tls.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
	}
	return errors.Join(errs...)
}
