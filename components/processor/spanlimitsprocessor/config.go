package spanlimitsprocessor // import "github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor"

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"
)

// Config of the span_limits processor. The limits' names are the
// OpenTelemetry SDKs' span limits (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT and
// the like); unlike an SDK's, they apply only to a span over max_span_size,
// so spans that can be forwarded as they are pass untouched.
type Config struct {
	// MaxSpanSize is the largest a span may be, in bytes of OTLP protobuf,
	// with its resource and scope: the size of an export request holding
	// that span alone. Set it below what the next hop accepts in one
	// request (minus what later processors add), so that every span can
	// be sent, on its own if need be.
	MaxSpanSize int `mapstructure:"max_span_size"`

	// AttributeValueLengthLimit is the length, in bytes, to which every
	// string and bytes value of a span over max_span_size is cut (its
	// attributes', events' and links' values, in arrays and maps too, its
	// name and status message); strings are cut at a UTF-8 boundary.
	AttributeValueLengthLimit int `mapstructure:"attribute_value_length_limit"`

	// AttributeCountLimit, EventCountLimit and LinkCountLimit apply to a
	// span still over max_span_size once its values are cut: attributes
	// (of the span, each event and each link), events and links beyond
	// them are dropped and added to the span's dropped_*_count, as an SDK
	// records them.
	AttributeCountLimit int `mapstructure:"attribute_count_limit"`
	EventCountLimit     int `mapstructure:"event_count_limit"`
	LinkCountLimit      int `mapstructure:"link_count_limit"`

	// MaxServiceNames bounds the distinct service.name values the
	// processor's metrics carry: a sender chooses its service.name, and
	// every distinct one is a series. Further names count as "other" (the
	// log line still names them).
	MaxServiceNames int `mapstructure:"max_service_names"`
}

var _ component.Config = (*Config)(nil)

// minMaxSpanSize keeps room, in a span of max_span_size, for its resource
// and scope once their values are cut.
const minMaxSpanSize = 16 << 10

func createDefaultConfig() component.Config {
	return &Config{
		// A quarter of the 4 MiB a gRPC server accepts by default (the
		// gateways' intake, most backends'): room for what the tiers add.
		MaxSpanSize:               1 << 20,
		AttributeValueLengthLimit: 4096,
		// The SDKs' defaults.
		AttributeCountLimit: 128,
		EventCountLimit:     128,
		LinkCountLimit:      128,
		MaxServiceNames:     200,
	}
}

// Validate checks the configuration; errors name the offending key.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxSpanSize < minMaxSpanSize {
		errs = append(errs, fmt.Errorf("max_span_size must be at least %d bytes, got %d", minMaxSpanSize, c.MaxSpanSize))
	}
	if c.AttributeValueLengthLimit <= 0 {
		errs = append(errs, fmt.Errorf("attribute_value_length_limit must be positive, got %d", c.AttributeValueLengthLimit))
	} else if c.AttributeValueLengthLimit >= c.MaxSpanSize {
		errs = append(errs, fmt.Errorf("attribute_value_length_limit (%d) must be below max_span_size (%d)", c.AttributeValueLengthLimit, c.MaxSpanSize))
	}
	for key, v := range map[string]int{
		"attribute_count_limit": c.AttributeCountLimit,
		"event_count_limit":     c.EventCountLimit,
		"link_count_limit":      c.LinkCountLimit,
		"max_service_names":     c.MaxServiceNames,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", key, v))
		}
	}
	return errors.Join(errs...)
}
