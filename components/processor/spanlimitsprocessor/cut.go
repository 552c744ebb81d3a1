package spanlimitsprocessor // import "github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor"

import (
	"math"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// maxValueDepth bounds how deep cutting descends into nested maps and
// arrays: a sender chooses the nesting, and the stack is not its to spend.
// What lies deeper is left as it is; if the span is still too large, it
// is dropped.
const maxValueDepth = 32

// cutString returns s cut to at most n bytes, at a UTF-8 boundary when s
// is valid there (an invalid sequence is cut where it stands).
func cutString(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for back := 1; back < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); back++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n
	}
	return s[:cut], true
}

// cutValue cuts every string and bytes value in v to n bytes, in maps and
// arrays down to maxValueDepth; it reports whether anything changed.
func cutValue(v pcommon.Value, n, depth int) bool {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if s, cut := cutString(v.Str(), n); cut {
			v.SetStr(s)
			return true
		}
	case pcommon.ValueTypeBytes:
		if b := v.Bytes(); b.Len() > n {
			kept := append([]byte(nil), b.AsRaw()[:n]...)
			v.SetEmptyBytes().FromRaw(kept)
			return true
		}
	case pcommon.ValueTypeMap:
		if depth < maxValueDepth {
			return cutMap(v.Map(), n, depth+1)
		}
	case pcommon.ValueTypeSlice:
		if depth < maxValueDepth {
			changed := false
			for _, e := range v.Slice().All() {
				changed = cutValue(e, n, depth+1) || changed
			}
			return changed
		}
	}
	return false
}

func cutMap(m pcommon.Map, n, depth int) bool {
	changed := false
	for _, v := range m.All() {
		changed = cutValue(v, n, depth) || changed
	}
	return changed
}

// cutSpanValues cuts every string and bytes value of span (its name, status
// message and trace state, and its attributes', events' and links' values)
// to n bytes.
func cutSpanValues(span ptrace.Span, n int) bool {
	changed := cutMap(span.Attributes(), n, 0)
	if s, cut := cutString(span.Name(), n); cut {
		span.SetName(s)
		changed = true
	}
	if s, cut := cutString(span.Status().Message(), n); cut {
		span.Status().SetMessage(s)
		changed = true
	}
	if s, cut := cutString(span.TraceState().AsRaw(), n); cut {
		span.TraceState().FromRaw(s)
		changed = true
	}
	for _, e := range span.Events().All() {
		if s, cut := cutString(e.Name(), n); cut {
			e.SetName(s)
			changed = true
		}
		changed = cutMap(e.Attributes(), n, 0) || changed
	}
	for _, l := range span.Links().All() {
		if s, cut := cutString(l.TraceState().AsRaw(), n); cut {
			l.TraceState().FromRaw(s)
			changed = true
		}
		changed = cutMap(l.Attributes(), n, 0) || changed
	}
	return changed
}

// limitAttributes keeps the first limit attributes of m and returns how
// many it dropped.
func limitAttributes(m pcommon.Map, limit int) int {
	if m.Len() <= limit {
		return 0
	}
	dropped, i := m.Len()-limit, 0
	m.RemoveIf(func(string, pcommon.Value) bool {
		i++
		return i > limit
	})
	return dropped
}

// limitSlice keeps the first limit elements of s (a span's events or
// links) and returns how many it dropped.
func limitSlice[E any, S interface {
	Len() int
	RemoveIf(func(E) bool)
}](s S, limit int) int {
	if s.Len() <= limit {
		return 0
	}
	dropped, i := s.Len()-limit, 0
	s.RemoveIf(func(E) bool {
		i++
		return i > limit
	})
	return dropped
}

// addDropped adds n to a dropped_*_count, saturating: a sender sets the
// count it arrives with.
func addDropped(count uint32, n int) uint32 {
	return uint32(min(uint64(count)+uint64(n), math.MaxUint32))
}

// limitSpanCounts applies the count limits to span: attributes (its own,
// each event's and each link's), events and links beyond them are dropped
// and counted in the span's dropped_*_count fields, as an SDK records
// them. It reports whether anything was dropped.
func limitSpanCounts(span ptrace.Span, cfg *Config) bool {
	changed := false
	if d := limitAttributes(span.Attributes(), cfg.AttributeCountLimit); d > 0 {
		span.SetDroppedAttributesCount(addDropped(span.DroppedAttributesCount(), d))
		changed = true
	}
	if d := limitSlice(span.Events(), cfg.EventCountLimit); d > 0 {
		span.SetDroppedEventsCount(addDropped(span.DroppedEventsCount(), d))
		changed = true
	}
	for _, e := range span.Events().All() {
		if d := limitAttributes(e.Attributes(), cfg.AttributeCountLimit); d > 0 {
			e.SetDroppedAttributesCount(addDropped(e.DroppedAttributesCount(), d))
			changed = true
		}
	}
	if d := limitSlice(span.Links(), cfg.LinkCountLimit); d > 0 {
		span.SetDroppedLinksCount(addDropped(span.DroppedLinksCount(), d))
		changed = true
	}
	for _, l := range span.Links().All() {
		if d := limitAttributes(l.Attributes(), cfg.AttributeCountLimit); d > 0 {
			l.SetDroppedAttributesCount(addDropped(l.DroppedAttributesCount(), d))
			changed = true
		}
	}
	return changed
}
