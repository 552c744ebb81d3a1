// make test's fuzzing builds (scripts/test.sh) set this tag: go test -fuzz
// instruments every package of the test binary, and client-go and the
// Kubernetes API types (brought by the k8s resolver and by the ring
// conformance tests' loadbalancing exporter) are two thirds of this
// package's (1,044 packages without the tag, 340 with it) and almost half
// of the sampling policy converter's, which imports it: most of a cold
// fuzzing build. No Fuzz target reaches the k8s resolver; it has its own
// tests, and the Kubernetes suite runs it against a real API server.

//go:build tailgate_fuzz

package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"context"
	"errors"

	"go.uber.org/zap"
)

type k8sMembership struct{}

func newK8sMembership(K8sResolver, *zap.Logger) (*k8sMembership, error) {
	return nil, errors.New("resolver::k8s: this is a fuzzing build (tag tailgate_fuzz), built without the k8s resolver")
}

func (*k8sMembership) start(context.Context, func([]string)) error { return nil }
func (*k8sMembership) shutdown(context.Context) error              { return nil }
