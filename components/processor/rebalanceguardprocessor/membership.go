package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
)

// membership is a source of the gateway set, as the agents see it.
type membership interface {
	// start begins watching; onChange is called with the full endpoint
	// list whenever it may have changed (the guard compares rings).
	start(ctx context.Context, onChange func([]string)) error
	shutdown(ctx context.Context) error
}

func newMembership(cfg ResolverConfig, set component.TelemetrySettings) (membership, error) {
	switch {
	case cfg.Static != nil:
		return &staticMembership{hostnames: cfg.Static.Hostnames}, nil
	case cfg.DNS != nil:
		return newDNSMembership(*cfg.DNS, set.Logger), nil
	case cfg.K8s != nil:
		return newK8sMembership(*cfg.K8s, set.Logger)
	}
	return nil, errors.New("no resolver configured")
}

type staticMembership struct{ hostnames []string }

func (s *staticMembership) start(_ context.Context, onChange func([]string)) error {
	onChange(append([]string(nil), s.hostnames...))
	return nil
}

func (*staticMembership) shutdown(context.Context) error { return nil }
