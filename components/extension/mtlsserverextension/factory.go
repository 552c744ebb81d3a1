package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension/internal/metadata"
)

// NewFactory returns the mtls_server extension factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		create,
		metadata.ExtensionStability,
	)
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newServer(cfg.(*Config), set.TelemetrySettings)
}
