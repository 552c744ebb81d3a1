// Package spanlimitsprocessor cuts down spans too large to be forwarded,
// the way the OpenTelemetry SDKs' span limits do, so that one sender's
// large spans can never make a batch that the next tier refuses whole.
// See README.md.
//
//go:generate mdatagen metadata.yaml
package spanlimitsprocessor // import "github.com/tailgate-dev/tailgate/components/processor/spanlimitsprocessor"
