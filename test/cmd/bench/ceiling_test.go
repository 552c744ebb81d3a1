package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

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
			"STOCK_OTLP_ENDPOINT=127.0.0.1:4317", "STOCK_HEALTH_ENDPOINT=127.0.0.1:13133", "STOCK_PPROF_ENDPOINT=127.0.0.1:1777", "STOCK_TELEMETRY_PORT=8888",
			"STOCK_PROMETHEUS=127.0.0.1:8889", "STOCK_GATEWAYS=[127.0.0.1:5317]", "STOCK_BACKEND_ENDPOINT=127.0.0.1:6317",
			"STOCK_DECISION_WAIT=2s", "STOCK_SAMPLING_PERCENTAGE=10", "STOCK_LATENCY_THRESHOLD_MS=1000",
		}
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "stock/%s: %s", name, out)
	}
}

// TestReplayDeliversEveryRequest: the lean sender hands every pre-encoded
// request to the target once (or, looping, more than once), and the null
// sink accepts each; a recording sink sees every span of every planned
// trace, each trace's latest span before the replay's acknowledgement of
// the request that held it (what the time-to-backend figures subtract).
func TestReplayDeliversEveryRequest(t *testing.T) {
	reqs, truth, err := ceilingLoad(20_000, 77)
	require.NoError(t, err)
	sink, err := harness.StartNullSink()
	require.NoError(t, err)
	defer sink.Close()
	sink.RecordArrivals()
	spans := 0
	for _, r := range reqs {
		spans += r.Spans
	}
	res, err := harness.Replay(context.Background(), sink.Endpoint(), reqs, 4, false)
	require.NoError(t, err)
	assert.Equal(t, int64(len(reqs)), res.Requests)
	assert.Equal(t, int64(spans), res.Spans)
	assert.Equal(t, int64(len(reqs)), sink.Requests())

	arrivals, delivered := sink.Arrivals(), res.LastDelivered(reqs)
	require.Len(t, arrivals, len(truth))
	require.Len(t, delivered, len(truth))
	for id, a := range arrivals {
		assert.Equal(t, truth[id].spans, a.Spans, "trace %s", id)
		assert.False(t, a.Last.After(delivered[id]), "trace %s arrived after its last request was acknowledged", id)
	}
	kept := keptByKind(arrivals, truth, delivered)
	for _, kind := range harness.Kinds {
		assert.Equal(t, kept[kind].kept, kept[kind].whole, "%s traces whole", kind)
		assert.Positive(t, kept[kind].kept, "%s traces", kind)
	}

	// Every compression a collector's exporter may send is taken (the
	// agents export zstd: a sink without its decompressor refuses every
	// request, and the agent drops what it cannot export).
	for _, c := range []string{"gzip", "zstd", "snappy"} {
		res, err := harness.Replay(context.Background(), sink.Endpoint(), reqs[:10], 4, false, grpc.WithDefaultCallOptions(grpc.UseCompressor(c)))
		require.NoError(t, err)
		assert.Zero(t, res.Failed, "%s requests refused", c)
		assert.Equal(t, int64(10), res.Requests, c)
	}

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

// TestReplayRetriesARefusal: a target at its memory bound refuses for a
// while (Unavailable); the replay sends those requests again, as senders
// do, so every one is delivered and none counts as failed.
func TestReplayRetriesARefusal(t *testing.T) {
	reqs, _, err := ceilingLoad(5_000, 77)
	require.NoError(t, err)
	sink, err := harness.StartNullSink()
	require.NoError(t, err)
	defer sink.Close()
	sink.RefuseNext(6)
	res, err := harness.Replay(context.Background(), sink.Endpoint(), reqs, 4, false)
	require.NoError(t, err)
	assert.Zero(t, res.Failed, "requests refused for good")
	assert.Equal(t, int64(6), res.Retried, "refusals sent again")
	assert.Equal(t, int64(len(reqs)), res.Requests)
	assert.Equal(t, int64(len(reqs)), sink.Requests(), "requests the sink took")
}

// TestBaselineProfileHasNoInHouseComponent: the profiles the
// whole-topology bench gives the baseline build name no in-house component
// anywhere (the baseline would refuse to start, as it did once with
// mtls_server on the gateways and with span_limits on the agents), and
// still validate.
func TestBaselineProfileHasNoInHouseComponent(t *testing.T) {
	for _, tier := range []string{"agent", "gateway"} {
		t.Run(tier, func(t *testing.T) { baselineProfileHasNoInHouseComponent(t, tier) })
	}
}

func baselineProfileHasNoInHouseComponent(t *testing.T, tier string) {
	path, err := baselineProfile(tier)
	require.NoError(t, err)
	defer os.Remove(path)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	// The in-house component types, from their metadata.yaml files.
	metadata, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "components", "*", "*", "metadata.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, metadata)
	for _, m := range metadata {
		var md struct{ Type string }
		raw, err := os.ReadFile(m)
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(raw, &md))
		require.NotEmpty(t, md.Type, m)
		assert.NotContains(t, string(data), md.Type, "the baseline profile names %s (%s)", md.Type, m)
	}
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	cmd := exec.Command(bin, "validate", "--config", path)
	cmd.Env = harness.Environ(nil)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "%s", out)
}
