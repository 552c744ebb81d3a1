package rebalanceguardprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzConsumeTraces feeds the span path arbitrary OTLP payloads (malformed
// and zero trace IDs, empty resources and batches, large batches) around a
// membership change: it must not panic, must forward every span, and must
// inject no more markers than it tracks traces.
func FuzzConsumeTraces(f *testing.F) {
	seed := func(td ptrace.Traces) {
		data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err == nil {
			f.Add(data, uint8(3))
		}
	}
	seed(ptrace.NewTraces())
	now := time.Unix(1_700_000_000, 0)
	seed(spansOf(pcommon.TraceID{}, 3, now, now)) // the invalid all-zero trace ID
	seed(spansOf(pcommon.TraceID{1, 2, 3}, 1, now, now))
	big := ptrace.NewTraces()
	for i := range 50 {
		spans := big.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for j := range 40 {
			sp := spans.AppendEmpty()
			sp.SetTraceID(pcommon.TraceID{byte(i), byte(j % 7)})
		}
	}
	seed(big)
	empty := ptrace.NewTraces()
	empty.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	seed(empty)
	f.Add([]byte{0x0a, 0xff, 0xff}, uint8(1))

	f.Fuzz(func(t *testing.T, payload []byte, gateways uint8) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		if err != nil {
			return // the receiver rejects what does not decode
		}
		members := []string{gwA, gwB, gwC, "10.0.0.4:4317"}[:1+int(gateways)%4]
		fx := newFixture(t, gwA, members, func(c *Config) { c.MaxTraces = 64 })
		want := td.SpanCount()
		require.NoError(t, fx.g.ConsumeTraces(context.Background(), td))
		fx.clock.advance(time.Second)
		fx.src.onChange([]string{gwA, gwB})
		td2, _ := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		require.NoError(t, fx.g.ConsumeTraces(context.Background(), td2))
		require.NoError(t, fx.g.Shutdown(context.Background()))

		// Every received span comes out; beyond them come only markers, at
		// most one per tracked trace at the change and at shutdown (the
		// payload may hold spans that look like markers, so they are
		// counted, not matched).
		total := 0
		for _, out := range fx.sink.AllTraces() {
			total += out.SpanCount()
		}
		require.GreaterOrEqual(t, total, 2*want, "spans lost")
		require.LessOrEqual(t, total-2*want, 2*64, "more markers than tracked traces")
		fx.g.mu.Lock()
		require.LessOrEqual(t, fx.g.tracker.len(), 64)
		fx.g.mu.Unlock()
	})
}

// FuzzStripReservedAttributes feeds the trust boundary (reserved.go)
// arbitrary OTLP payloads, with the guard's attribute names in the
// dictionary: afterwards no span and no resource carries a reserved
// attribute, however often the payload repeats the key, every other
// attribute is as it was, and the count covers every span that carried one.
func FuzzStripReservedAttributes(f *testing.F) {
	cfg := createDefaultConfig().(*Config)
	reserved := newReservedAttributes(cfg)
	seed := func(td ptrace.Traces) {
		data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err == nil {
			f.Add(data)
		}
	}
	now := time.Unix(1_700_000_000, 0)
	seed(forged(pcommon.TraceID{1}, now, now))
	seed(spansOf(pcommon.TraceID{2}, 3, now, now))
	// The same reserved key twice on one span and on its resource, as the
	// wire allows (attributes are a repeated KeyValue) and pcommon cannot
	// build.
	f.Add(duplicateKeys(reserved.keys[0]))
	for _, k := range reserved.keys {
		f.Add([]byte(k))
	}

	has := func(m pcommon.Map) bool {
		for k := range m.All() {
			if k == reserved.keys[0] || k == reserved.keys[1] || k == reserved.keys[2] {
				return true
			}
		}
		return false
	}
	others := func(m pcommon.Map) map[string]any {
		out := map[string]any{}
		for k, v := range m.All() {
			if k != reserved.keys[0] && k != reserved.keys[1] && k != reserved.keys[2] {
				out[k] = v.AsRaw()
			}
		}
		return out
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		if err != nil {
			return // the receiver rejects what does not decode
		}
		type before struct {
			attrs    map[string]any
			reserved bool
		}
		var spans, resources []before
		carrying := int64(0)
		for _, rs := range td.ResourceSpans().All() {
			onResource := has(rs.Resource().Attributes())
			resources = append(resources, before{others(rs.Resource().Attributes()), onResource})
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					spans = append(spans, before{others(span.Attributes()), false})
					if onResource || has(span.Attributes()) {
						carrying++
					}
				}
			}
		}
		n, _ := reserved.stripAll(td)
		require.Equal(t, carrying, n, "spans counted as carrying a reserved attribute")
		i, j := 0, 0
		for _, rs := range td.ResourceSpans().All() {
			require.False(t, has(rs.Resource().Attributes()), "a resource kept a reserved attribute")
			require.Equal(t, resources[i].attrs, others(rs.Resource().Attributes()))
			i++
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					require.False(t, has(span.Attributes()), "a span kept a reserved attribute")
					require.Equal(t, spans[j].attrs, others(span.Attributes()))
					j++
				}
			}
		}
	})
}

// duplicateKeys encodes, field by field, an OTLP TracesData of one span
// whose resource and whose own attributes each hold key twice (= true).
func duplicateKeys(key string) []byte {
	message := func(num protowire.Number, body []byte) func([]byte) []byte {
		return func(b []byte) []byte {
			return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), body)
		}
	}
	var value, kv []byte
	value = protowire.AppendVarint(protowire.AppendTag(value, 2, protowire.VarintType), 1) // bool_value: true
	kv = protowire.AppendString(protowire.AppendTag(kv, 1, protowire.BytesType), key)
	kv = message(2, value)(kv)
	attrs := func(num protowire.Number) []byte { return message(num, kv)(message(num, kv)(nil)) }
	var span []byte
	span = protowire.AppendBytes(protowire.AppendTag(span, 1, protowire.BytesType), make([]byte, 16))
	span[len(span)-1] = 7 // a valid trace ID
	span = protowire.AppendBytes(protowire.AppendTag(span, 2, protowire.BytesType), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	span = append(span, attrs(9)...)
	resourceSpans := message(1, attrs(1))(nil)                       // resource
	resourceSpans = message(2, message(2, span)(nil))(resourceSpans) // scope_spans.spans
	return message(1, resourceSpans)(nil)
}
