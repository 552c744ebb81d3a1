// Package rebalanceguardprocessor keeps both halves of a trace that a
// gateway membership change split between two gateways, so the backend
// reassembles it whole. See README.md.
//
//go:generate mdatagen metadata.yaml
package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"
