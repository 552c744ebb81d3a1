package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/confmap"
)

// NewFactory returns the converter's factory, as ocb's generated main.go
// expects of a manifest's `converters:` entry.
func NewFactory() confmap.ConverterFactory {
	return confmap.NewConverterFactory(func(confmap.ConverterSettings) confmap.Converter { return converter{} })
}

type converter struct{}

// Convert checks the policies as the user wrote them and that the tiers'
// couplings hold (tiers.go), then completes the guarded pipelines: a
// user's policy cannot take the guard's name.
func (converter) Convert(ctx context.Context, conf *confmap.Conf) error {
	cfg, err := read(conf)
	if err != nil {
		return err
	}
	for _, ts := range cfg.tailSamplers {
		if err := validatePolicies(ctx, ts); err != nil {
			return fmt.Errorf("processors::%s::policies: %w", ts.id, err)
		}
	}
	if err := checkTiers(conf, cfg); err != nil {
		return err
	}
	patch, err := guardPipelines(cfg)
	if err != nil || patch == nil {
		return err
	}
	return patch.apply(conf)
}
