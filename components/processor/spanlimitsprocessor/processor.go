package spanlimitsprocessor // import "github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor"

import (
	"context"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor/internal/metadata"
)

// limiter applies Config to every span that passes.
type limiter struct {
	cfg    *Config
	logger *zap.Logger
	tb     *metadata.TelemetryBuilder

	mu       sync.Mutex
	services map[string]metric.MeasurementOption // service.name -> its metric attribute
}

func newLimiter(set processor.Settings, cfg *Config) (*limiter, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &limiter{cfg: cfg, logger: set.Logger, tb: tb, services: map[string]metric.MeasurementOption{}}, nil
}

func (l *limiter) shutdown(context.Context) error {
	l.tb.Shutdown()
	return nil
}

// processTraces lets through unchanged every resource whose spans all fit
// (the common case: one size computation of each resource, so one walk of
// the request), and limits the others'.
func (l *limiter) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		if embedded(sizer.ResourceSpansSize(rs)) <= l.cfg.MaxSpanSize {
			return false
		}
		return l.limitResource(ctx, rs)
	})
	return td, nil
}

// limitResource limits the spans of rs that exceed max_span_size, and
// reports whether none is left.
func (l *limiter) limitResource(ctx context.Context, rs ptrace.ResourceSpans) bool {
	service := serviceName(rs.Resource())
	maxSize := l.cfg.MaxSpanSize
	var truncated, dropped int64

	// What every request of these spans repeats, the resource and then the
	// scope, may take up to half of max_span_size; beyond, it is cut like a
	// span's values, to leave its spans room. Every span under a cut
	// resource or scope counts as truncated. Cutting only shrinks, so a
	// span that fit on arrival still fits; each other span is then cut
	// itself, or dropped if nothing brings it under max_span_size.
	resource := resourceEnvelope(rs)
	resourceCut := false
	if requestSize(resource, 0, 0) > maxSize/2 {
		res := rs.Resource()
		l.cutEnvelope(res.Attributes(), func(d int) {
			res.SetDroppedAttributesCount(addDropped(res.DroppedAttributesCount(), d))
		})
		resource, resourceCut = resourceEnvelope(rs), true
	}
	rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
		scope := scopeEnvelope(ss)
		scopeCut := resourceCut
		if requestSize(resource, scope, 0) > maxSize/2 {
			l.cutScope(ss.Scope())
			scope, scopeCut = scopeEnvelope(ss), true
		}
		size := func(span ptrace.Span) int { return requestSize(resource, scope, sizer.SpanSize(span)) }
		ss.Spans().RemoveIf(func(span ptrace.Span) bool {
			before := size(span)
			if before <= maxSize {
				if scopeCut {
					truncated++
				}
				return false
			}
			cutSpanValues(span, l.cfg.AttributeValueLengthLimit)
			if size(span) > maxSize {
				limitSpanCounts(span, l.cfg)
			}
			fields := []zap.Field{
				zap.String("service.name", service), zap.Stringer("trace_id", span.TraceID()),
				zap.Stringer("span_id", span.SpanID()), zap.Int("bytes", before), zap.Int("max_span_size", maxSize),
			}
			if after := size(span); after > maxSize {
				dropped++
				l.logger.Warn("Dropped a span over max_span_size that no limit brought under it", fields...)
				return true
			}
			truncated++
			l.logger.Warn("Truncated a span over max_span_size", append(fields, zap.Int("bytes_after", size(span)))...)
			return false
		})
		return ss.Spans().Len() == 0
	})
	if truncated > 0 || dropped > 0 {
		attr := l.serviceAttribute(service)
		if truncated > 0 {
			l.tb.ProcessorSpanLimitsSpansTruncated.Add(ctx, truncated, attr)
		}
		if dropped > 0 {
			l.tb.ProcessorSpanLimitsSpansDropped.Add(ctx, dropped, attr)
		}
	}
	return rs.ScopeSpans().Len() == 0
}

// cutEnvelope cuts a resource's or scope's attributes: values to
// attribute_value_length_limit, then those beyond attribute_count_limit,
// whose number goes to dropped.
func (l *limiter) cutEnvelope(attrs pcommon.Map, dropped func(int)) {
	cutMap(attrs, l.cfg.AttributeValueLengthLimit, 0)
	if d := limitAttributes(attrs, l.cfg.AttributeCountLimit); d > 0 {
		dropped(d)
	}
}

// cutScope cuts a scope's name, version and attributes.
func (l *limiter) cutScope(sc pcommon.InstrumentationScope) {
	if s, cut := cutString(sc.Name(), l.cfg.AttributeValueLengthLimit); cut {
		sc.SetName(s)
	}
	if s, cut := cutString(sc.Version(), l.cfg.AttributeValueLengthLimit); cut {
		sc.SetVersion(s)
	}
	l.cutEnvelope(sc.Attributes(), func(d int) {
		sc.SetDroppedAttributesCount(addDropped(sc.DroppedAttributesCount(), d))
	})
}

// maxServiceNameLength bounds the service.name a metric carries.
const maxServiceNameLength = 128

// serviceName is the sender's service.name as a metric label: valid UTF-8,
// at most maxServiceNameLength bytes.
func serviceName(res pcommon.Resource) string {
	v, ok := res.Attributes().Get("service.name")
	if !ok || v.AsString() == "" {
		return "unknown_service"
	}
	s, _ := cutString(strings.ToValidUTF8(v.AsString(), "\uFFFD"), maxServiceNameLength)
	return s
}

// otherServices is the label of services beyond max_service_names.
const otherServices = "other"

// serviceAttribute is the metric attribute for service: its own name for
// the first max_service_names names, "other" after.
func (l *limiter) serviceAttribute(service string) metric.MeasurementOption {
	l.mu.Lock()
	defer l.mu.Unlock()
	if opt, ok := l.services[service]; ok {
		return opt
	}
	if len(l.services) >= l.cfg.MaxServiceNames {
		service = otherServices
		if opt, ok := l.services[service]; ok {
			return opt
		}
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attribute.String("service.name", service)))
	l.services[service] = opt
	return opt
}
