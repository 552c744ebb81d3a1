// Package mtlsserverextension serves a gRPC receiver over mutual TLS, with
// upstream's configtls, and makes every refused client loud: a log line and
// a metric by reason. See README.md.
//
//go:generate mdatagen metadata.yaml
package mtlsserverextension // import "github.com/tailgate-dev/tailgate/components/extension/mtlsserverextension"
