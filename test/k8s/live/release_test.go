package live

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestReleaseInstallsFromARegistryAndUpgrades: `make release` publishes to
// a real OCI registry (the Distribution server) the image with every
// platform, each platform's SBOM attached to it, and the chart; `helm
// install oci://...` from that registry runs both tiers on the image the
// chart names by digest, pulled from the registry, and traffic through the
// agents arrives whole. Then a new image build is released and `helm
// upgrade` to it rolls both tiers under traffic: every error and slow trace
// still arrives whole, and every pod runs the new digest.
func TestReleaseInstallsFromARegistryAndUpgrades(t *testing.T) {
	settleGateways(t, 3, "k8s")
	time.Sleep(decisionWait) // earlier tests' traces decided
	start := time.Now()
	timeline := func(format string, args ...any) {
		t.Logf("REPORT release: %6s "+format, append([]any{time.Since(start).Round(time.Second)}, args...)...)
	}
	registry, err := harness.StartRegistry(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(registry.Stop)
	require.NoError(t, env.nodes.TrustRegistry(registry.Host))
	timeline("registry serving at %s", registry.Host)
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	version := info["VERSION"]
	published := registry.Host + "/tailgate-dev"

	first := makeRelease(t, published)
	timeline("make release pushed %s", first)
	requirePublished(t, published, version)

	makeRoomForRelease(t)
	chart := "oci://" + published + "/charts/tailgate"
	backend := `{"exporters":{"otlp_grpc/backend_memory":{"endpoint":"` + env.sink.Endpoint() + `"}}}`
	_, err = helmCmd(append([]string{"install", helmRelease, chart, "--version", version, "--plain-http",
		"--set", "clusterName=" + clusterName, "--set-json", "gateway.config=" + backend, "--wait", "--timeout", "5m"}, fitTestNodesValues...)...)
	require.NoError(t, err)
	settleGateways(t, 3, "k8s")
	timeline("helm install from the registry: 3 gateways and 2 agents ready")
	requireRunning(t, first)

	gen := harness.DefaultGeneratorConfig()
	gen.Seed, gen.Agents, gen.Rate, gen.Traces = 1301, 2, 30, 30*20
	gen.ErrorRatio, gen.SlowRatio = 0.15, 0.15
	installed, err := harness.Plan(gen)
	require.NoError(t, err)
	requireWhole(t, "release install", installed, sendThroughAgents(t, installed, nil))
	timeline("traffic through the installed release arrived whole")

	// A new build of the image, released like the first: a new digest for
	// the same version (the image's creation time differs).
	second := makeRelease(t, published)
	require.NotEqual(t, first, second, "the second build has the first one's digest: nothing would roll")
	timeline("make release pushed the new build %s", second)

	gatewaysBefore := podNames(t, "app.kubernetes.io/name=tailgate-gateway")
	agentsBefore := podNames(t, "app.kubernetes.io/name=tailgate-agent")
	gen.Seed, gen.Traces = 1302, 30*75 // 75 s: the change at 10 s, both rollouts inside
	during, err := harness.Plan(gen)
	require.NoError(t, err)
	// Senders reach their node's agent through the node-local Service, as
	// applications do, and retry as the SDKs do while their agent rolls.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := newNodeLocalAgents()
	agents.follow(ctx)
	var upgraded, rolledOut time.Duration
	trafficStart := time.Now()
	wait := harness.RunAt(ctx, map[time.Duration]func(){10 * time.Second: func() {
		began := time.Now()
		// --reset-then-reuse-values: the new chart's default image (by
		// digest) with the install's values; --reuse-values would keep the
		// old chart's default, the old digest.
		if _, err := helmCmd("upgrade", helmRelease, chart, "--version", version, "--plain-http", "--reset-then-reuse-values", "--wait", "--timeout", "4m"); err != nil {
			t.Errorf("helm upgrade: %v", err)
			return
		}
		upgraded = time.Since(began)
		for _, workload := range []string{"deployment/tailgate-gateway", "daemonset/tailgate-agent"} {
			if _, err := env.cp.Kubectl("-n", namespace, "rollout", "status", workload, "--timeout=4m"); err != nil {
				t.Errorf("rollout of %s: %v", workload, err)
				return
			}
		}
		rolledOut = time.Since(trafficStart)
	}})
	sctx, scancel := context.WithTimeout(ctx, 5*time.Minute)
	defer scancel()
	sent, err := harness.SendWith(sctx, during, harness.SendConfig{
		Targets: agents.targets, DialOptions: []grpc.DialOption{agents.dialOption()}, RetryFor: time.Minute,
	})
	require.NoError(t, err)
	traffic := time.Since(trafficStart)
	wait()
	require.NotZero(t, rolledOut, "the upgrade did not finish")
	require.Less(t, rolledOut, traffic, "both tiers must roll under traffic")
	timeline("helm upgrade to the new build returned after %s; both tiers rolled out %s into %s of traffic",
		upgraded.Round(time.Second), rolledOut.Round(time.Second), traffic.Round(time.Second))
	settleGateways(t, 3, "k8s")
	requireRunning(t, second)
	for _, p := range podNames(t, "app.kubernetes.io/name=tailgate-gateway") {
		assert.NotContains(t, gatewaysBefore, p, "gateway %s was not replaced by the upgrade", p)
	}
	for _, p := range podNames(t, "app.kubernetes.io/name=tailgate-agent") {
		assert.NotContains(t, agentsBefore, p, "agent %s was not replaced by the upgrade", p)
	}
	assert.Zero(t, sent.SpansFailed, "spans refused for good while both tiers rolled: %v", sent.FailedBy)
	requireWhole(t, "release upgrade", during, sent)
	timeline("traffic during the upgrade arrived whole")
}

// makeRelease runs `make release` against registry (plain HTTP), with the
// image built under a repository of the test's own so that it touches no
// other image in podman's store, and returns the pushed image's digest
// reference.
func makeRelease(t *testing.T, registry string) string {
	t.Helper()
	repo := fmt.Sprintf("localhost/tailgate-release-test-%d", os.Getpid())
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = exec.Command("podman", "manifest", "rm", repo+":"+info["VERSION"]).Run()
		_ = exec.Command("podman", "rmi", "-f", repo+":"+info["VERSION"]+"-amd64", repo+":"+info["VERSION"]+"-arm64", repo+":dev").Run()
	})
	// The platform binaries through their lock, which make test's own
	// build of them takes too.
	for _, arch := range []string{"amd64", "arm64"} {
		_, err := harness.PlatformBinaryPath(arch)
		require.NoError(t, err)
	}
	cmd := exec.Command("make", "-C", harness.RepoRoot(), "--no-print-directory", "release",
		"REGISTRY="+registry, "PLAIN_HTTP=1", "IMAGE_REPO="+repo)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make release:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	ref := lines[len(lines)-1]
	require.Regexp(t, `^`+registry+`/tailgate@sha256:[0-9a-f]{64}$`, ref, "make release's last line is the pushed image's digest reference")
	return ref
}

// requirePublished: the registry holds the release's image index with both
// platforms, each with its SBOM attached as a referrer, and the chart.
func requirePublished(t *testing.T, registry, version string) {
	t.Helper()
	oras, err := harness.ToolBinary("oras", "oras")
	require.NoError(t, err)
	image := registry + "/tailgate:" + version
	out, err := exec.Command(oras, "manifest", "fetch", "--plain-http", image).Output()
	require.NoError(t, err)
	var index struct {
		Manifests []struct {
			Platform struct{ OS, Architecture string }
		}
	}
	require.NoError(t, json.Unmarshal(out, &index))
	var platforms []string
	for _, m := range index.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	assert.ElementsMatch(t, []string{"linux/amd64", "linux/arm64"}, platforms, "the published image's platforms")
	for _, platform := range platforms {
		out, err := exec.Command(oras, "discover", "--plain-http", "--platform", platform, "--format", "json",
			"--artifact-type", "application/vnd.cyclonedx+json", image).Output()
		require.NoError(t, err)
		var found struct {
			Referrers []struct {
				ArtifactType string `json:"artifactType"`
			} `json:"referrers"`
		}
		require.NoError(t, json.Unmarshal(out, &found))
		assert.Len(t, found.Referrers, 1, "%s: the SBOM attached to the image", platform)
	}
	// The chart, with the image just pushed as its default.
	values, err := helmCmd("show", "values", "oci://"+registry+"/charts/tailgate", "--version", version, "--plain-http")
	require.NoError(t, err)
	assert.Contains(t, values, "repository: "+registry+"/tailgate\n", "the published chart's default image")
}

// requireRunning: every tailgate pod runs ref, the image the chart names by
// digest, which the kubelet pulled from the registry.
func requireRunning(t *testing.T, ref string) {
	t.Helper()
	for _, name := range []string{"tailgate-gateway", "tailgate-agent"} {
		for _, p := range readyPods(t, name) {
			assert.Equal(t, ref, p.Spec.Containers[0].Image, "pod %s", p.Name)
		}
	}
}
