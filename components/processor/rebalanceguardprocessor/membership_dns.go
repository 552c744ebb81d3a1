package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// dnsMembership polls a name like the loadbalancing exporter's dns
// resolver: every resolved address becomes ip:port (IPv6 in brackets),
// sorted, default interval 5s and timeout 1s.
type dnsMembership struct {
	cfg      DNSResolver
	logger   *zap.Logger
	resolver interface {
		LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// The loadbalancing exporter's dns resolver defaults.
const (
	defaultDNSInterval = 5 * time.Second
	defaultDNSTimeout  = time.Second
)

func newDNSMembership(cfg DNSResolver, logger *zap.Logger) *dnsMembership {
	cfg = cfg.withDefaults()
	return &dnsMembership{cfg: cfg, logger: logger, resolver: net.DefaultResolver}
}

func (d *dnsMembership) resolve(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	addrs, err := d.resolver.LookupIPAddr(ctx, d.cfg.Hostname)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		// Written as the exporter's dns resolver writes them (it hashes
		// these strings): IPv6 bracketed, the port only when one is set.
		host := a.String() // with the zone, if any, as the exporter writes it
		if a.IP.To4() == nil {
			host = fmt.Sprintf("[%s]", host)
		}
		if d.cfg.Port != "" {
			host += ":" + d.cfg.Port
		}
		out = append(out, host)
	}
	sort.Strings(out)
	return out, nil
}

func (d *dnsMembership) start(ctx context.Context, onChange func([]string)) error {
	ctx, d.cancel = context.WithCancel(context.Background())
	var last []string
	poll := func() {
		eps, err := d.resolve(ctx)
		if err != nil {
			d.logger.Warn("rebalance_guard: DNS resolution failed; keeping the last gateway set", zap.String("hostname", d.cfg.Hostname), zap.Error(err))
			return
		}
		// Reported only when it differs from the last answer, as the
		// exporter's resolver does: the guard would build a ring (N x 200
		// points, BenchmarkMembershipChange) to find it unchanged, every
		// poll.
		if last != nil && slices.Equal(eps, last) {
			return
		}
		last = eps
		onChange(eps)
	}
	poll()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				poll()
			}
		}
	}()
	return nil
}

func (d *dnsMembership) shutdown(context.Context) error {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	return nil
}
