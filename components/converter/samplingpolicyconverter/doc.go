// Package samplingpolicyconverter is a confmap converter, listed in
// tailgate's builder manifest, that makes the gateway's tail_sampling
// policies the user's to write without letting them lose split traces:
//
//   - for every pipeline in which a rebalance_guard processor precedes a
//     tail_sampling processor, it puts the guard's keep policy first in that
//     tail_sampling's policies and the filter that drops the guard's marker
//     spans right after it (guard.go), whatever the user's policies say;
//   - it checks every tail_sampling processor's policies with upstream's own
//     code and names the policy and the key at fault (validate.go), so that
//     `tailgate validate` refuses a bad policies file: upstream builds the
//     policies only when the processor starts.
//
// See README.md.
package samplingpolicyconverter // import "github.com/tailgate-dev/tailgate/components/converter/samplingpolicyconverter"
