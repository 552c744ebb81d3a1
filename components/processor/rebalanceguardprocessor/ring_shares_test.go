package rebalanceguardprocessor

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestRingSharesAreWhatTheRingRoutes: the exact shares match where the
// ring (RingOwner) sends 400k random trace IDs, and add up to the whole
// ring.
func TestRingSharesAreWhatTheRingRoutes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 3, 7} {
		var endpoints []string
		for i := range n {
			endpoints = append(endpoints, fmt.Sprintf("10.0.%d.%d:4317", rng.IntN(256), i+1))
		}
		shares := RingShares(endpoints)
		var sum float64
		for _, s := range shares {
			sum += s
		}
		assert.InDelta(t, 1, sum, 1e-9, "%d endpoints", n)

		owner := RingOwner(endpoints)
		counts := map[string]int{}
		const ids = 400_000
		for range ids {
			var id pcommon.TraceID
			for j := range id {
				id[j] = byte(rng.UintN(256))
			}
			counts[owner(id)]++
		}
		for _, e := range endpoints {
			// 400k samples: a share's standard error is under 0.1%.
			assert.InDelta(t, shares[e], float64(counts[e])/ids, 0.005, "%s of %d endpoints", e, n)
		}
	}
}
