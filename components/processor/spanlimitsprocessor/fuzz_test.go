package spanlimitsprocessor

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// FuzzProcessTraces feeds the processor arbitrary OTLP payloads under a
// small max_span_size: it must not panic, every span it lets through must
// fit max_span_size, and every span that fit on arrival must leave.
func FuzzProcessTraces(f *testing.F) {
	seed := func(td ptrace.Traces) {
		data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err == nil {
			f.Add(data)
		}
	}
	seed(ptrace.NewTraces())
	seed(request("checkout", 20, nil))
	seed(request("checkout", 3, func(s ptrace.Span) { s.Attributes().PutStr("payload", strings.Repeat("p", 40000)) }))
	seed(request("checkout", 3, func(s ptrace.Span) { s.Attributes().PutStr(strings.Repeat("k", 40000), "v") }))
	seed(request("checkout", 3, func(s ptrace.Span) {
		for i := range 3000 {
			s.Attributes().PutStr(itoa(i), "v")
			s.Events().AppendEmpty().SetName(itoa(i))
		}
	}))
	wide := request(strings.Repeat("s", 30000), 2, nil)
	wide.ResourceSpans().At(0).ScopeSpans().At(0).Scope().SetName(strings.Repeat("\xff", 30000))
	seed(wide)
	f.Add([]byte{0x0a, 0xff, 0xff})

	cfg := createDefaultConfig().(*Config)
	cfg.MaxSpanSize, cfg.AttributeValueLengthLimit, cfg.AttributeCountLimit = minMaxSpanSize, 512, 16
	cfg.EventCountLimit, cfg.LinkCountLimit = 8, 8
	f.Fuzz(func(t *testing.T, payload []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(payload)
		if err != nil {
			return // the receiver refuses what does not decode
		}
		fitting := 0
		for name, size := range spansBySizeAndID(td) {
			if size <= cfg.MaxSpanSize {
				fitting += name.n
			}
		}
		out := run(t, cfg, td)
		left := 0
		for name, size := range spansBySizeAndID(out) {
			require.LessOrEqual(t, size, cfg.MaxSpanSize, "span %v leaves over max_span_size", name)
			left += name.n
		}
		require.GreaterOrEqual(t, left, fitting, "spans that fit on arrival must all leave")
	})
}

// spanKey tells spans apart in a payload whose names and IDs may repeat:
// by position, counting spans that share it.
type spanKey struct{ rs, ss, span, n int }

func spansBySizeAndID(td ptrace.Traces) map[spanKey]int {
	out := map[spanKey]int{}
	for i, rs := range td.ResourceSpans().All() {
		for j, ss := range rs.ScopeSpans().All() {
			for k, span := range ss.Spans().All() {
				out[spanKey{i, j, k, 1}] = aloneSize(rs, ss, span)
			}
		}
	}
	return out
}
