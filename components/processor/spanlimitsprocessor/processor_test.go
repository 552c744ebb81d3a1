package spanlimitsprocessor

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor/internal/metadata"
)

// run passes td through a span_limits processor of cfg and returns what
// came out.
func run(t testing.TB, cfg *Config, td ptrace.Traces) ptrace.Traces {
	t.Helper()
	sink := new(consumertest.TracesSink)
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeTraces(context.Background(), td))
	require.NoError(t, p.Shutdown(context.Background()))
	if len(sink.AllTraces()) == 0 {
		return ptrace.NewTraces()
	}
	return sink.AllTraces()[0]
}

// aloneSize is the size of an export request holding span alone with its
// resource and scope, built and measured as the exporters' bytes sizer
// measures it: the independent check of size.go's arithmetic.
func aloneSize(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, span ptrace.Span) int {
	td := ptrace.NewTraces()
	out := td.ResourceSpans().AppendEmpty()
	rs.Resource().CopyTo(out.Resource())
	out.SetSchemaUrl(rs.SchemaUrl())
	outScope := out.ScopeSpans().AppendEmpty()
	ss.Scope().CopyTo(outScope.Scope())
	outScope.SetSchemaUrl(ss.SchemaUrl())
	span.CopyTo(outScope.Spans().AppendEmpty())
	return sizer.TracesSize(td)
}

// spansByName lists every span of td by name, with the size of a request
// holding it alone.
func spansByName(td ptrace.Traces) map[string]int {
	out := map[string]int{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				out[span.Name()] = aloneSize(rs, ss, span)
			}
		}
	}
	return out
}

// request is one sender's request: a resource of service with small
// spans "small-0".."small-<n-1>" and, when big is set, a span "big" that
// big fills in.
func request(service string, n int, big func(ptrace.Span)) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("shop")
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("small-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
		sp.SetTraceID(pcommon.TraceID{byte(i), 1})
		sp.SetSpanID(pcommon.SpanID{byte(i), 2})
		sp.Attributes().PutStr("http.request.method", "GET")
	}
	if big != nil {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("big")
		sp.SetTraceID(pcommon.TraceID{0xbb})
		sp.SetSpanID(pcommon.SpanID{0xbb})
		big(sp)
	}
	return td
}

func bigSpan(td ptrace.Traces) (ptrace.Span, bool) {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				if strings.HasPrefix(span.Name(), "big") {
					return span, true
				}
			}
		}
	}
	return ptrace.Span{}, false
}

const mib = 1 << 20

// TestEverySpanLeavesSmallEnoughToForward: whatever a span carries, it
// leaves the processor no larger than max_span_size (measured on a request
// built around it) or not at all; the sender's other spans leave
// unchanged; and each case ends as its rule says.
func TestEverySpanLeavesSmallEnoughToForward(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	tests := []struct {
		name string
		big  func(ptrace.Span)
		// check judges the big span, nil when it was dropped.
		check func(t *testing.T, span *ptrace.Span)
	}{
		{"a 2 MiB attribute value is cut to attribute_value_length_limit", func(s ptrace.Span) {
			s.Attributes().PutStr("db.query.text", strings.Repeat("SELECT ", 2*mib/7))
			s.Attributes().PutStr("http.request.method", "POST")
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			v, _ := s.Attributes().Get("db.query.text")
			assert.Len(t, v.Str(), cfg.AttributeValueLengthLimit)
			m, _ := s.Attributes().Get("http.request.method")
			assert.Equal(t, "POST", m.Str(), "short values stay")
		}},
		{"a value with invalid UTF-8 is cut too", func(s ptrace.Span) {
			s.Attributes().PutStr("payload", strings.Repeat("\xff\xfe", mib))
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			v, _ := s.Attributes().Get("payload")
			assert.Len(t, v.Str(), cfg.AttributeValueLengthLimit)
		}},
		{"a cut multi-byte character is not split", func(s ptrace.Span) {
			s.Attributes().PutStr("text", "a"+strings.Repeat("€", mib))
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			v, _ := s.Attributes().Get("text")
			assert.True(t, strings.HasSuffix(v.Str(), "€"), "cut inside a character")
			assert.LessOrEqual(t, len(v.Str()), cfg.AttributeValueLengthLimit)
		}},
		{"bytes values, array and map elements are cut", func(s ptrace.Span) {
			s.Attributes().PutEmptyBytes("blob").FromRaw(make([]byte, mib))
			arr := s.Attributes().PutEmptySlice("lines")
			arr.AppendEmpty().SetStr(strings.Repeat("y", mib))
			s.Attributes().PutEmptyMap("nested").PutStr("deep", strings.Repeat("z", mib))
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			b, _ := s.Attributes().Get("blob")
			assert.Equal(t, cfg.AttributeValueLengthLimit, b.Bytes().Len())
			l, _ := s.Attributes().Get("lines")
			assert.Len(t, l.Slice().At(0).Str(), cfg.AttributeValueLengthLimit)
		}},
		{"a huge name, status message and event are cut", func(s ptrace.Span) {
			s.SetName("big" + strings.Repeat("n", mib))
			s.Status().SetCode(ptrace.StatusCodeError)
			s.Status().SetMessage(strings.Repeat("m", mib))
			s.Events().AppendEmpty().Attributes().PutStr("exception.stacktrace", strings.Repeat("at ", mib))
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			assert.Len(t, s.Name(), cfg.AttributeValueLengthLimit)
			assert.Equal(t, ptrace.StatusCodeError, s.Status().Code(), "the status code stays")
			assert.Len(t, s.Status().Message(), cfg.AttributeValueLengthLimit)
		}},
		{"thousands of attributes beyond attribute_count_limit are dropped and counted", func(s ptrace.Span) {
			for i := range 20000 {
				s.Attributes().PutStr("attribute."+strings.Repeat("k", i%7)+string(rune('a'+i%26))+itoa(i), strings.Repeat("v", 60))
			}
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			assert.Equal(t, cfg.AttributeCountLimit, s.Attributes().Len())
			assert.Equal(t, uint32(20000-cfg.AttributeCountLimit), s.DroppedAttributesCount())
		}},
		{"events and links beyond their limits are dropped and counted", func(s ptrace.Span) {
			for range 30000 {
				s.Events().AppendEmpty().Attributes().PutStr("k", strings.Repeat("e", 20))
				s.Links().AppendEmpty().SetTraceID(pcommon.TraceID{1})
			}
		}, func(t *testing.T, s *ptrace.Span) {
			require.NotNil(t, s)
			assert.Equal(t, cfg.EventCountLimit, s.Events().Len())
			assert.Equal(t, uint32(30000-cfg.EventCountLimit), s.DroppedEventsCount())
			assert.Equal(t, cfg.LinkCountLimit, s.Links().Len())
		}},
		{"a span no limit can cut (a 2 MiB attribute key) is dropped", func(s ptrace.Span) {
			s.Attributes().PutStr(strings.Repeat("k", 2*mib), "v")
		}, func(t *testing.T, s *ptrace.Span) { assert.Nil(t, s) }},
		{"values nested deeper than the walk goes are not reached; the span is dropped", func(s ptrace.Span) {
			m := s.Attributes().PutEmptyMap("l0")
			for range 2 * maxValueDepth {
				m = m.PutEmptyMap("l")
			}
			m.PutStr("bottom", strings.Repeat("b", 2*mib))
		}, func(t *testing.T, s *ptrace.Span) { assert.Nil(t, s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := request("checkout", 50, tt.big)
			want := spansByName(in)
			out := run(t, cfg, in)
			got := spansByName(out)
			for name, size := range got {
				assert.LessOrEqual(t, size, cfg.MaxSpanSize, "span %.20s leaves larger than max_span_size", name)
			}
			for name, size := range want {
				if !strings.HasPrefix(name, "big") {
					assert.Equal(t, size, got[name], "span %s of the same request is not as it came", name)
				}
			}
			if span, ok := bigSpan(out); ok {
				tt.check(t, &span)
			} else {
				tt.check(t, nil)
			}
		})
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	s := ""
	for {
		s = string(digits[i%10]) + s
		if i /= 10; i == 0 {
			return s
		}
	}
}

// TestSmallRequestsPassUntouched: a request whose spans all fit is the
// same object, unchanged (the fast path).
func TestSmallRequestsPassUntouched(t *testing.T) {
	in := request("checkout", 200, nil)
	want := ptrace.NewTraces()
	in.CopyTo(want)
	out := run(t, createDefaultConfig().(*Config), in)
	assert.Equal(t, want, out)
}

// TestOtherSendersPassUnchanged: one request of several senders, one of
// whom sends a span over the size; the others' resources and spans leave
// exactly as they came.
func TestOtherSendersPassUnchanged(t *testing.T) {
	td := request("quiet", 30, nil)
	request("loud", 5, func(s ptrace.Span) { s.Attributes().PutStr("payload", strings.Repeat("p", 3*mib)) }).
		ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	request("also-quiet", 30, nil).ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	quiet, alsoQuiet := ptrace.NewResourceSpans(), ptrace.NewResourceSpans()
	td.ResourceSpans().At(0).CopyTo(quiet)
	td.ResourceSpans().At(2).CopyTo(alsoQuiet)

	out := run(t, createDefaultConfig().(*Config), td)
	require.Equal(t, 3, out.ResourceSpans().Len())
	assert.Equal(t, quiet, out.ResourceSpans().At(0))
	assert.Equal(t, alsoQuiet, out.ResourceSpans().At(2))
	assert.Equal(t, 6, out.ResourceSpans().At(1).ScopeSpans().At(0).Spans().Len(), "the loud sender's spans, cut")
}

// TestAWideResourceIsCut: a resource that alone takes more than half of
// max_span_size (thousands of attributes, long values) is cut, so that
// its spans, each small, still leave; a resource too large even then
// takes its spans with it, and only its own.
func TestAWideResourceIsCut(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	td := request("wide", 10, nil)
	res := td.ResourceSpans().At(0).Resource()
	for i := range 5000 {
		res.Attributes().PutStr("k8s.label."+itoa(i), strings.Repeat("w", 300))
	}
	out := run(t, cfg, td)
	got := spansByName(out)
	assert.Len(t, got, 10, "every span of the wide resource")
	for name, size := range got {
		assert.LessOrEqual(t, size, cfg.MaxSpanSize, name)
	}
	outRes := out.ResourceSpans().At(0).Resource()
	assert.Equal(t, cfg.AttributeCountLimit, outRes.Attributes().Len())
	assert.Equal(t, uint32(5001-cfg.AttributeCountLimit), outRes.DroppedAttributesCount())

	// A resource whose service.name key is a 1 MiB string cannot be cut.
	td = request("quiet", 10, nil)
	huge := request("huge-key", 3, nil)
	huge.ResourceSpans().At(0).Resource().Attributes().PutStr(strings.Repeat("k", mib), "v")
	huge.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	out = run(t, cfg, td)
	assert.Len(t, spansByName(out), 10, "only the quiet sender's spans")
}
