package mtlsserverextension

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRefusalLogIsBoundedPerReason: a client refused in a loop gives one
// line per interval per reason, each counting the refusals it stands for;
// another reason is not held back by the first.
func TestRefusalLogIsBoundedPerReason(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newRefusalLog(zap.New(core), 10*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	peer := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5000}
	err := errors.New("tls: client didn't provide a certificate")

	for range 50 {
		l.record(reasonNoCertificate, peer, err)
		now = now.Add(100 * time.Millisecond) // 5 s in all
	}
	l.record(reasonExpired, peer, err)
	now = now.Add(6 * time.Second)
	l.record(reasonNoCertificate, peer, err)

	lines := logs.All()
	var got []any
	for _, line := range lines {
		got = append(got, []any{line.ContextMap()["reason"], line.ContextMap()["refusals"]})
	}
	assert.Equal(t, []any{
		[]any{reasonNoCertificate, int64(1)},
		[]any{reasonExpired, int64(1)},
		[]any{reasonNoCertificate, int64(50)},
	}, got)
	assert.Equal(t, "10.0.0.9:5000", lines[0].ContextMap()["peer"])
}
