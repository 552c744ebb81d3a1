package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"

import (
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// refusalLog writes one warning per reason at most every interval; the
// line counts the refusals of that reason since the previous line, so a
// client retrying in a loop is reported, not echoed.
type refusalLog struct {
	logger   *zap.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	reasons map[string]*reasonLog
}

type reasonLog struct {
	last       time.Time
	suppressed int
}

func newRefusalLog(logger *zap.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{logger: logger, interval: interval, now: time.Now, reasons: map[string]*reasonLog{}}
}

func (l *refusalLog) record(reason string, peer net.Addr, err error) {
	l.mu.Lock()
	r := l.reasons[reason]
	if r == nil {
		r = &reasonLog{}
		l.reasons[reason] = r
	}
	now := l.now()
	if !r.last.IsZero() && now.Sub(r.last) < l.interval {
		r.suppressed++
		l.mu.Unlock()
		return
	}
	refusals := r.suppressed + 1
	r.last, r.suppressed = now, 0
	l.mu.Unlock()

	fields := []zap.Field{
		zap.String("reason", reason),
		zap.Stringer("peer", peer),
		zap.Int("refusals", refusals),
		zap.Error(err),
	}
	if cert := presentedCertificate(err); cert != nil {
		fields = append(fields,
			zap.String("client_certificate_subject", cert.Subject.String()),
			zap.String("client_certificate_issuer", cert.Issuer.String()),
			zap.Time("client_certificate_not_after", cert.NotAfter))
	}
	l.logger.Warn("Refused a client's TLS handshake: only clients with a certificate of client_ca_file may write here", fields...)
}
