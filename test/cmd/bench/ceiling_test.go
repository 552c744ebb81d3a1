package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestStockConfigsAreValid: the bench's stock references load in the
// pinned release (its baseline build has the same upstream components as
// tailgate), so `make bench` does not find a renamed key half-way through.
func TestStockConfigsAreValid(t *testing.T) {
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	for _, name := range []string{"agent.yaml", "gateway.yaml"} {
		cmd := exec.Command(bin, "validate", "--config", filepath.Join("stock", name))
		cmd.Env = []string{
			"STOCK_OTLP_ENDPOINT=127.0.0.1:4317", "STOCK_HEALTH_ENDPOINT=127.0.0.1:13133", "STOCK_TELEMETRY_PORT=8888",
			"STOCK_PROMETHEUS=127.0.0.1:8889", "STOCK_GATEWAYS=[127.0.0.1:5317]", "STOCK_BACKEND_ENDPOINT=127.0.0.1:6317",
			"STOCK_DECISION_WAIT=2s", "STOCK_SAMPLING_PERCENTAGE=10",
		}
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "stock/%s: %s", name, out)
	}
}

// TestReplayDeliversEveryRequest: the lean sender hands every pre-encoded
// request to the target once (or, looping, more than once), and the null
// sink accepts each.
func TestReplayDeliversEveryRequest(t *testing.T) {
	reqs, err := ceilingLoad(20_000)
	require.NoError(t, err)
	sink, err := harness.StartNullSink()
	require.NoError(t, err)
	defer sink.Close()
	spans := 0
	for _, r := range reqs {
		spans += r.Spans
	}
	res, err := harness.Replay(context.Background(), sink.Endpoint(), reqs, 4, false)
	require.NoError(t, err)
	assert.Equal(t, int64(len(reqs)), res.Requests)
	assert.Equal(t, int64(spans), res.Spans)
	assert.Equal(t, int64(len(reqs)), sink.Requests())

	// Looping, the replay goes round until stopped: here once the sink
	// has taken the list twice more.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for sink.Requests() < 3*int64(len(reqs)) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	looped, err := harness.Replay(ctx, sink.Endpoint(), reqs, 4, true)
	require.NoError(t, err)
	assert.Greater(t, looped.Requests, int64(len(reqs)), "a looping replay goes round")
	assert.Zero(t, looped.Failed)
}
