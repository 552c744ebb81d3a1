package rebalanceguardprocessor

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// fakeResolver answers LookupIPAddr from a script: answers[i] for the i-th
// lookup, the last one from then on.
type fakeResolver struct {
	mu      sync.Mutex
	answers []fakeAnswer
	calls   int
}

type fakeAnswer struct {
	ips []string
	err error
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, _ string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.answers[min(f.calls, len(f.answers)-1)]
	f.calls++
	var out []net.IPAddr
	for _, ip := range a.ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(ip)})
	}
	return out, a.err
}

// recorder collects the gateway sets a membership reports.
type recorder struct {
	mu   sync.Mutex
	sets [][]string
}

func (r *recorder) onChange(set []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, set)
}

func (r *recorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil
	}
	return r.sets[len(r.sets)-1]
}

func startDNS(t *testing.T, cfg DNSResolver, answers ...fakeAnswer) (*recorder, *fakeResolver) {
	t.Helper()
	d := newDNSMembership(cfg, zap.NewNop())
	res := &fakeResolver{answers: answers}
	d.resolver = res
	rec := &recorder{}
	require.NoError(t, d.start(context.Background(), rec.onChange))
	t.Cleanup(func() { require.NoError(t, d.shutdown(context.Background())) })
	return rec, res
}

// TestDNSMembershipListsEveryAddressOnThePort: every A and AAAA record, on
// the configured port, IPv6 bracketed as host:port requires, sorted.
func TestDNSMembershipListsEveryAddressOnThePort(t *testing.T) {
	rec, _ := startDNS(t, DNSResolver{Hostname: "gw", Port: "4999", Interval: time.Hour},
		fakeAnswer{ips: []string{"10.0.0.2", "10.0.0.1", "fd00::1"}})
	assert.Equal(t, []string{"10.0.0.1:4999", "10.0.0.2:4999", "[fd00::1]:4999"}, rec.last())
}

// TestDNSMembershipWithoutAPortListsAddresses: with no port the exporter
// hashes the bare (IPv6: bracketed) addresses, and so does the guard.
func TestDNSMembershipWithoutAPortListsAddresses(t *testing.T) {
	rec, _ := startDNS(t, DNSResolver{Hostname: "gw", Interval: time.Hour},
		fakeAnswer{ips: []string{"10.0.0.1", "fd00::1"}})
	assert.Equal(t, []string{"10.0.0.1", "[fd00::1]"}, rec.last())
}

// TestDNSMembershipReportsOnlyChanges: polls that find the set unchanged
// report nothing (each report costs the guard a ring); a change does.
func TestDNSMembershipReportsOnlyChanges(t *testing.T) {
	rec, res := startDNS(t, DNSResolver{Hostname: "gw", Port: "4317", Interval: 5 * time.Millisecond},
		fakeAnswer{ips: []string{"10.0.0.1"}}, fakeAnswer{ips: []string{"10.0.0.1"}}, fakeAnswer{ips: []string{"10.0.0.1"}},
		fakeAnswer{ips: []string{"10.0.0.2", "10.0.0.1"}})
	require.Eventually(t, func() bool { return len(rec.last()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { res.mu.Lock(); defer res.mu.Unlock(); return res.calls >= 8 }, 5*time.Second, 5*time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, [][]string{{"10.0.0.1:4317"}, {"10.0.0.1:4317", "10.0.0.2:4317"}}, rec.sets)
}

// TestDNSMembershipFollowsChangesAndKeepsTheSetOnFailure: each poll reports
// the current records when they changed; a failed lookup reports nothing,
// so the last set stays (an empty set would make the guard mark nothing).
func TestDNSMembershipFollowsChangesAndKeepsTheSetOnFailure(t *testing.T) {
	rec, res := startDNS(t, DNSResolver{Hostname: "gw", Port: "4317", Interval: 10 * time.Millisecond},
		fakeAnswer{ips: []string{"10.0.0.1"}},
		fakeAnswer{err: errors.New("no such host")},
		fakeAnswer{ips: []string{"10.0.0.1", "10.0.0.2"}})
	require.Eventually(t, func() bool { return len(rec.last()) == 2 }, 5*time.Second, 10*time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, []string{"10.0.0.1:4317"}, rec.sets[0])
	for _, set := range rec.sets {
		assert.NotEmpty(t, set, "a failed lookup reported an empty set")
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	assert.GreaterOrEqual(t, res.calls, 3)
}
