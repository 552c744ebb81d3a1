package distribution

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/modfile"
	modversion "golang.org/x/mod/module"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// Facts that must be equal in several files and that no compiler checks:
// each test here fails when one side moves without the other.

var resolvers = []string{"dns", "k8s", "static"}

// gatewaySetEnvs are environments under which the agents' and the gateways'
// view of the gateway set must agree: the defaults, and every variable that
// describes the gateway set changed.
var gatewaySetEnvs = []map[string]string{
	{},
	{
		"TAILGATE_GATEWAY_OTLP_PORT":        "4999",
		"TAILGATE_GATEWAY_DNS_NAME":         "gw.example.svc.cluster.local",
		"TAILGATE_GATEWAY_K8S_SERVICE":      "gw.example",
		"TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[10.1.0.1:4999, 10.1.0.2:4999]",
	},
}

// TestGuardFollowsTheAgentsResolver: rebalance_guard replicates the agents'
// hash ring, so for each resolver the gateway's rebalance_guard/<resolver>
// sets the same resolver keys as the agent's load_balancing/<resolver>,
// each resolving to the same value under every environment, and
// TAILGATE_GATEWAY_RESOLVER picks that pair in both profiles.
func TestGuardFollowsTheAgentsResolver(t *testing.T) {
	agentRaw, err := profile.Raw("agent")
	require.NoError(t, err)
	gatewayRaw, err := profile.Raw("gateway")
	require.NoError(t, err)
	for _, resolver := range resolvers {
		exporter, guard := "load_balancing/"+resolver, "rebalance_guard/"+resolver
		keys := sortedMapKeys(profile.Get(agentRaw, "exporters", exporter, "resolver", resolver))
		require.NotEmpty(t, keys, "agent profile: %s has no %s resolver", exporter, resolver)
		assert.Equal(t, keys, sortedMapKeys(profile.Get(gatewayRaw, "processors", guard, "resolver", resolver)),
			"%s.resolver.%s sets other keys than the agent's %s", guard, resolver, exporter)
		for i, base := range gatewaySetEnvs {
			t.Run(fmt.Sprintf("%s/env-%d", resolver, i), func(t *testing.T) {
				env := maps.Clone(base)
				env["TAILGATE_GATEWAY_RESOLVER"] = resolver
				agent, err := profile.Effective("agent", env)
				require.NoError(t, err)
				gateway, err := profile.Effective("gateway", env)
				require.NoError(t, err)
				for _, k := range keys {
					assert.Equal(t,
						profile.Get(agent, "exporters", exporter, "resolver", resolver, k),
						profile.Get(gateway, "processors", guard, "resolver", resolver, k),
						"resolver.%s.%s of the agent's %s and the gateway's %s (env %v)", resolver, k, exporter, guard, env)
				}
				assert.Equal(t, []any{exporter}, profile.Get(agent, "service", "pipelines", "traces", "exporters"))
				assert.Contains(t, profile.Get(gateway, "service", "pipelines", "traces/sampling", "processors"), guard)
			})
		}
	}
}

// TestSamplingFollowsTheGuardsAttributes: in the configuration the binary
// runs (after its samplingpolicyconverter), for each resolver the guard's
// keep and marker attributes reach a filter right after tail_sampling that
// drops the marker spans, and tail_sampling holds one policy more than the
// profile writes: the guard's (print-config, v0.161.0, prints policies
// without their name and settings; the converter's own tests check the
// policy itself, and test/e2e that split traces stay whole with policies
// that name no guard policy).
func TestSamplingFollowsTheGuardsAttributes(t *testing.T) {
	raw, err := profile.Raw("gateway")
	require.NoError(t, err)
	userPolicies, _ := profile.Get(raw, "processors", "tail_sampling", "policies").([]any)
	require.NotEmpty(t, userPolicies)
	for _, resolver := range resolvers {
		t.Run(resolver, func(t *testing.T) {
			gateway, err := profile.Effective("gateway", map[string]string{"TAILGATE_GATEWAY_RESOLVER": resolver})
			require.NoError(t, err)
			guard := "rebalance_guard/" + resolver
			filter := "filter/rebalance_guard_" + resolver + "_markers"
			marker := profile.Get(gateway, "processors", guard, "marker_attribute")
			require.NotEmpty(t, marker)

			want := fmt.Sprintf(`span.attributes[%q] == true`, marker)
			conditions := fmt.Sprint(profile.Get(gateway, "processors", filter, "trace_conditions"))
			assert.Contains(t, conditions, want, "%s does not drop the guard's markers (%s)", filter, marker)

			policies, _ := profile.Get(gateway, "processors", "tail_sampling", "policies").([]any)
			assert.Len(t, policies, len(userPolicies)+1, "tail_sampling runs the user's policies and the guard's")

			procs, _ := profile.Get(gateway, "service", "pipelines", "traces/sampling", "processors").([]any)
			at := func(id string) int { return slices.Index(procs, any(id)) }
			assert.True(t, at(guard) >= 0 && at(guard) < at("tail_sampling") && at("tail_sampling")+1 == at(filter),
				"traces/sampling must run the guard, then tail_sampling, then %s: %v", filter, procs)
		})
	}
}

// TestGuardOutlivesDecisionWait: the guard must count a trace as in flight
// for longer than tail_sampling waits to decide it, for every decision_wait
// an overlay can give tail_sampling: the binary gives the guard in the
// pipeline tail_sampling's, and the guard's active_window is either unset
// (derived from decision_wait, which the component's tests show exceeds
// it) or longer. print-config validates the guard, which rejects an
// active_window at or below decision_wait, and, with the dns resolver, a
// decision_wait the tier cannot agree on a change within.
func TestGuardOutlivesDecisionWait(t *testing.T) {
	// The profile's dns agreement time: 5s of cluster DNS caching + the
	// 1s interval + the 1s timeout (rebalance_guard README).
	const dnsAgreement = 7 * time.Second
	for _, wait := range []time.Duration{time.Second, 10 * time.Second, 45 * time.Second, 5 * time.Minute} {
		for _, resolver := range resolvers {
			t.Run(wait.String()+"/"+resolver, func(t *testing.T) {
				gateway, err := profile.Effective("gateway", map[string]string{"TAILGATE_GATEWAY_RESOLVER": resolver},
					"processors::tail_sampling::decision_wait="+wait.String())
				if resolver == "dns" && wait <= dnsAgreement {
					// The tier cannot agree on a change before such a
					// decision_wait: refused, naming the setting to change.
					require.ErrorContains(t, err, "rebalance_guard/dns: resolver::dns::interval")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, wait.String(), profile.Get(gateway, "processors", "tail_sampling", "decision_wait"))
				guard := "rebalance_guard/" + resolver
				assert.Equal(t, wait.String(), profile.Get(gateway, "processors", guard, "decision_wait"), "%s decision_wait", guard)
				active, err := time.ParseDuration(fmt.Sprint(profile.Get(gateway, "processors", guard, "active_window")))
				require.NoError(t, err)
				if active != 0 { // 0: derived from decision_wait
					assert.Greater(t, active, wait, "%s active_window", guard)
				}
			})
		}
	}
}

// TestGuardTracksWhatTailSamplingHolds: the guard in the pipeline sizes
// its trace tracker from tail_sampling's num_traces, under every value an
// overlay gives tail_sampling.
func TestGuardTracksWhatTailSamplingHolds(t *testing.T) {
	for _, n := range []string{"1000", "300000"} {
		for _, resolver := range resolvers {
			gateway, err := profile.Effective("gateway", map[string]string{"TAILGATE_GATEWAY_RESOLVER": resolver},
				"processors::tail_sampling::num_traces="+n)
			require.NoError(t, err)
			want := fmt.Sprint(profile.Get(gateway, "processors", "tail_sampling", "num_traces"))
			require.Equal(t, n, want)
			guard := "rebalance_guard/" + resolver
			assert.Equal(t, want, fmt.Sprint(profile.Get(gateway, "processors", guard, "num_traces")), "%s num_traces", guard)
		}
	}
}

// TestComponentModulesPinTheShippedVersions: an in-house component is
// built and tested in its own module, but ships in cmd/tailgate with the
// versions ocb resolved from builder-config.yaml. Its tests (the ring
// conformance test against the real loadbalancing exporter above all)
// prove something about the binary only if the component's module pins
// what the binary ships: every module it requires directly at the
// binary's version, and every replace of the manifest that reaches it.
func TestComponentModulesPinTheShippedVersions(t *testing.T) {
	root := harness.RepoRoot()
	shipped := parseMod(t, filepath.Join(root, "cmd", "tailgate", "go.mod"))
	shippedVersion := map[string]string{}
	for _, r := range shipped.Require {
		shippedVersion[r.Mod.Path] = r.Mod.Version
	}
	manifest := loadManifest(t)
	// ocb copies the manifest's replaces into the generated go.mod, so local
	// paths are relative to the output directory.
	outDir := filepath.Join(root, manifest.Dist.OutputPath)
	manifestReplace := map[modversion.Version]string{}
	for _, line := range manifest.Replaces {
		f, err := modfile.Parse("replace.mod", []byte("module x\nreplace "+line+"\n"), nil)
		require.NoError(t, err, line)
		r := f.Replace[0]
		manifestReplace[r.Old] = modTarget(outDir, r.New)
	}
	mods, err := filepath.Glob(filepath.Join(root, "components", "*", "*", "go.mod"))
	require.NoError(t, err)
	require.NotEmpty(t, mods)
	for _, path := range mods {
		rel, _ := filepath.Rel(root, path)
		t.Run(rel, func(t *testing.T) {
			mod := parseMod(t, path)
			required := map[string]bool{}
			for _, r := range mod.Require {
				required[r.Mod.Path] = true
				if v, ok := shippedVersion[r.Mod.Path]; ok && !r.Indirect {
					assert.Equal(t, v, r.Mod.Version, "%s requires %s at another version than cmd/tailgate/go.mod", rel, r.Mod.Path)
				}
			}
			replaced := map[modversion.Version]string{}
			for _, r := range mod.Replace {
				replaced[r.Old] = modTarget(filepath.Dir(path), r.New)
			}
			// A replace reaches the component when it requires the module,
			// or replaces it itself (a test-only dependency that only
			// `go mod tidy` resolves).
			for old, target := range manifestReplace {
				if _, own := replaced[old]; required[old.Path] || own {
					assert.Equal(t, target, replaced[old], "%s: builder-config.yaml replaces %s with %s", rel, old, target)
				}
			}
		})
	}
}

// modTarget is a replacement as a comparable string: a local directory made
// absolute from the go.mod that names it, a module path@version as is.
func modTarget(dir string, v modversion.Version) string {
	if v.Version == "" {
		return filepath.Clean(filepath.Join(dir, v.Path))
	}
	return v.String()
}

// TestTestsBuildWithTheShippedVersions: the components' tests and the
// repository's tests (test/...) link every library they share with the
// binary at the version cmd/tailgate/go.mod selected. Their results then
// speak for the libraries the binary ships, and make test, which builds the
// tests as the binary is built (CGO_ENABLED=0, -trimpath), reuses the
// packages the binary's build compiled: Go's build cache reuses a package
// only when it and everything below it are the same, so one library at
// another version recompiles everything above it. Only modules that provide
// a package count (`go list -deps -test`), not every module in the graph.
func TestTestsBuildWithTheShippedVersions(t *testing.T) {
	root := harness.RepoRoot()
	shipped := packageModules(t, filepath.Join(root, "cmd", "tailgate"), ".")
	require.Contains(t, shipped, "go.opentelemetry.io/collector/pdata")
	mods, err := filepath.Glob(filepath.Join(root, "components", "*", "*", "go.mod"))
	require.NoError(t, err)
	require.NotEmpty(t, mods)
	dirs := []string{root}
	for _, m := range mods {
		dirs = append(dirs, filepath.Dir(m))
	}
	for _, dir := range dirs {
		rel, _ := filepath.Rel(root, filepath.Join(dir, "go.mod"))
		t.Run(rel, func(t *testing.T) {
			shared := 0
			for path, version := range packageModules(t, dir, "./...") {
				if want, ok := shipped[path]; ok {
					shared++
					assert.Equal(t, want, version, "%s selects %s at another version than cmd/tailgate/go.mod: `go get %s@%s` there", rel, path, path, want)
				}
			}
			assert.Greater(t, shared, 10, "%s shares libraries with the binary", rel)
		})
	}
}

// packageModules maps each module that provides a package to pattern
// (built in dir, tests included) or to its dependencies to its version; the
// main module has none and is left out.
func packageModules(t *testing.T, dir, pattern string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-mod=readonly", "-deps", "-test", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}", pattern)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list in %s: %s", dir, stderr.String())
	mods := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if path, version, ok := strings.Cut(line, " "); ok && version != "" {
			mods[path] = version
		}
	}
	return mods
}

// liveToolStarters are the calls through which a test of test/k8s/live runs
// a program besides the control plane: Helm, Prometheus,
// prometheus-adapter, Jaeger, kube-router (each is built on first use).
var liveToolStarters = []string{
	"render.Helm", "render.HelmBinary", "render.Chart",
	"harness.StartPrometheus", "cluster.StartCustomMetricsAPI",
	"harness.StartJaeger", "harness.JaegerBinary", "harness.ToolBinary", "harness.StartRegistry",
	".EnforceNetworkPolicies", // builds and starts kube-router (cluster.Fabric)
}

// TestLiveSecondHalfHoldsTheSuitesToolUsers: make test runs the Kubernetes
// suite in two halves (scripts/test.sh): the first with the tests the
// Makefile names in neither list; the second runs the LIVE_NODE_FAILURES
// while its tools build, then the LIVE_SECOND_HALF once they are built.
// LIVE_SECOND_HALF must name every test of the suite that runs a tool
// (directly or through the package's helpers), LIVE_NODE_FAILURES none,
// and both only tests: a tool's user left out would wait in the first
// half for an idle-priority build, and a name that is no test would
// silently run nothing.
func TestLiveSecondHalfHoldsTheSuitesToolUsers(t *testing.T) {
	root := harness.RepoRoot()
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	list := func(name string) []string {
		m := regexp.MustCompile(`(?m)^` + name + ` := \^\(([A-Za-z0-9_|]+)\)\$\$$`).FindSubmatch(makefile)
		require.NotNil(t, m, "Makefile: %s := ^(TestA|TestB)$$", name)
		return strings.Split(string(m[1]), "|")
	}
	listed, failures := list("LIVE_SECOND_HALF"), list("LIVE_NODE_FAILURES")

	// What each function of the package calls: package-qualified
	// ("render.Helm") or the package's own ("helmCmd").
	calls := map[string][]string{}
	files, err := filepath.Glob(filepath.Join(root, "test", "k8s", "live", "*_test.go"))
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || fn.Recv != nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch e := n.(type) {
				case *ast.CallExpr:
					switch f := e.Fun.(type) {
					case *ast.Ident:
						calls[fn.Name.Name] = append(calls[fn.Name.Name], f.Name)
					case *ast.SelectorExpr:
						if x, ok := f.X.(*ast.Ident); ok {
							calls[fn.Name.Name] = append(calls[fn.Name.Name], x.Name+"."+f.Sel.Name)
						} else {
							// A method of a field (env.nodes.EnforceNetworkPolicies).
							calls[fn.Name.Name] = append(calls[fn.Name.Name], "."+f.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
	var runsATool func(fn string, seen map[string]bool) bool
	runsATool = func(fn string, seen map[string]bool) bool {
		if slices.Contains(liveToolStarters, fn) {
			return true
		}
		if seen[fn] {
			return false
		}
		seen[fn] = true
		return slices.ContainsFunc(calls[fn], func(c string) bool { return runsATool(c, seen) })
	}
	var tests, users []string
	for fn := range calls {
		if strings.HasPrefix(fn, "Test") && fn != "TestMain" {
			tests = append(tests, fn)
			if runsATool(fn, map[string]bool{}) {
				users = append(users, fn)
			}
		}
	}
	require.Greater(t, len(tests), 10, "the suite's tests")
	for _, name := range listed {
		assert.Contains(t, tests, name, "LIVE_SECOND_HALF names no test of test/k8s/live")
	}
	for _, name := range failures {
		assert.Contains(t, tests, name, "LIVE_NODE_FAILURES names no test of test/k8s/live")
		assert.NotContains(t, users, name, "LIVE_NODE_FAILURES run before the second half's tools are built")
	}
	for _, user := range users {
		assert.Contains(t, listed, user, "LIVE_SECOND_HALF must name every test of the suite that runs Helm, Prometheus, prometheus-adapter, Jaeger, the registry or kube-router")
	}
	require.NotEmpty(t, users, "the suite's tests that run a tool")
}

// TestKubernetesLibrariesPinnedOnce: the binary (through k8s_attributes,
// load_balancing and rebalance_guard), the in-house component, the tests,
// the control plane and nodes the tests run (with Helm and Prometheus,
// built in its module) and the nodes' containerd all use one version of the Kubernetes client libraries: the
// one the control plane's release ships. thirdPartyPrograms are wrapper
// modules that build someone else's released program with its own pins, as
// its release does: Jaeger never talks to the test cluster;
// prometheus-adapter does, through the stable APIs its release uses against
// any newer cluster (it does not compile against the newer libraries), and
// so does kube-router (the nodes' NetworkPolicies: core/v1, networking/v1).
var thirdPartyPrograms = []string{
	filepath.Join("build", "tools", "jaeger", "go.mod"),
	filepath.Join("build", "tools", "prometheus-adapter", "go.mod"),
	filepath.Join("build", "tools", "kube-router", "go.mod"),
}

func TestKubernetesLibrariesPinnedOnce(t *testing.T) {
	root := harness.RepoRoot()
	kube := parseMod(t, filepath.Join(root, "build", "tools", "kubernetes", "go.mod"))
	var release string
	for _, r := range kube.Require {
		if r.Mod.Path == "k8s.io/kubernetes" {
			release = r.Mod.Version
		}
	}
	require.NotEmpty(t, release, "build/tools/kubernetes/go.mod does not require k8s.io/kubernetes")
	// Kubernetes vX.Y.Z publishes its libraries as v0.Y.Z.
	want := "v0." + strings.SplitN(strings.TrimPrefix(release, "v"), ".", 2)[1]

	// cri-api: the real nodes' kubelet and containerd speak one CRI.
	libraries := []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/cri-api"}
	checked := 0
	require.NoError(t, filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "go.mod" {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if slices.Contains(thirdPartyPrograms, rel) {
			return nil
		}
		mod := parseMod(t, path)
		for _, r := range mod.Require {
			if slices.Contains(libraries, r.Mod.Path) {
				assert.Equal(t, want, r.Mod.Version, "%s: %s", rel, r.Mod.Path)
				checked++
			}
		}
		return nil
	}))
	assert.GreaterOrEqual(t, checked, 3*4, "the binary, the component, the tests and the control plane each require the three libraries")
}

func sortedMapKeys(v any) []string {
	m, _ := v.(map[string]any)
	return slices.Sorted(maps.Keys(m))
}

// TestTelemetrygenIsTheShippedContribRelease: the tests' load generator
// (build/tools/telemetrygen) is the contrib release the distribution's
// contrib components come from, so its exporters and the receivers under
// test are the same generation.
func TestTelemetrygenIsTheShippedContribRelease(t *testing.T) {
	root := harness.RepoRoot()
	var contrib string
	for _, m := range loadManifest(t).Processors {
		if fields := strings.Fields(m.GoMod); strings.HasSuffix(fields[0], "contrib/processor/tailsamplingprocessor") {
			contrib = fields[1]
		}
	}
	require.NotEmpty(t, contrib, "builder-config.yaml ships no contrib tailsamplingprocessor")
	var telemetrygen string
	for _, r := range parseMod(t, filepath.Join(root, "build", "tools", "telemetrygen", "go.mod")).Require {
		if r.Mod.Path == "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen" {
			telemetrygen = r.Mod.Version
		}
	}
	assert.Equal(t, contrib, telemetrygen, "build/tools/telemetrygen pins another contrib release than builder-config.yaml")
}

// TestPrometheusOperatorCRDsMatchItsAPITypes: the CRDs the live tests
// install (build/tools/prometheus-operator) are of the release whose API
// types the manifests' tests decode the monitoring objects with (go.mod),
// so both judge the objects by one schema.
func TestPrometheusOperatorCRDsMatchItsAPITypes(t *testing.T) {
	root := harness.RepoRoot()
	version := func(path, module string) string {
		for _, r := range parseMod(t, path).Require {
			if r.Mod.Path == module {
				return r.Mod.Version
			}
		}
		t.Fatalf("%s does not require %s", path, module)
		return ""
	}
	types := version(filepath.Join(root, "go.mod"), "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring")
	crds := version(filepath.Join(root, "build", "tools", "prometheus-operator", "go.mod"), "github.com/prometheus-operator/prometheus-operator")
	assert.Equal(t, types, crds, "build/tools/prometheus-operator pins another release than go.mod's API types")
}

// mib is the unit of the receivers' max_recv_msg_size_mib.
const mib = 1 << 20

// tierHeadroom is what a tier may add to a span after span_limits and
// before its exporter's batch (k8s_attributes' few names, the cluster
// name, the guard's keep attribute) with room to spare.
const tierHeadroom = 64 << 10

// profileSources are the places the profiles reach a collector from: the
// checkout, and the ConfigMaps of the kustomize base and of the chart at
// its defaults, each as the two files' text.
func profileSources(t *testing.T) map[string]map[string]string {
	t.Helper()
	sources := map[string]map[string]string{"checkout": {}}
	for _, name := range profile.Names {
		data, err := os.ReadFile(harness.ProfilePath(name))
		require.NoError(t, err)
		sources["checkout"][name+".yaml"] = string(data)
	}
	fromConfigMaps := func(objs []*unstructured.Unstructured) map[string]string {
		files := map[string]string{}
		for _, u := range objs {
			if u.GetKind() != "ConfigMap" {
				continue
			}
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			for _, name := range profile.Names {
				if text, ok := data[name+".yaml"]; ok {
					files[name+".yaml"] = text
				}
			}
		}
		return files
	}
	rendered, err := render.Build(render.BaseDir())
	require.NoError(t, err)
	base, err := render.Objects(rendered)
	require.NoError(t, err)
	sources["kustomize base"] = fromConfigMaps(base)
	chart, err := render.Chart("tailgate", "observability")
	require.NoError(t, err)
	sources["chart"] = fromConfigMaps(chart)
	return sources
}

// TestSizesFitBetweenTheTiers: whatever one tier sends to the next fits
// what the next accepts, in the profiles as the checkout, the kustomize
// base and the chart ship them. The agents split each gateway's share
// into requests of exactly the gateways' gRPC intake limit, by bytes; the
// span_limits of both tiers are one rule, and leave every span room
// under the agents' requests and under the requests to every backend.
func TestSizesFitBetweenTheTiers(t *testing.T) {
	for source, files := range profileSources(t) {
		t.Run(source, func(t *testing.T) {
			docs := map[string]map[string]any{}
			for _, name := range profile.Names {
				require.Contains(t, files, name+".yaml")
				var doc map[string]any
				require.NoError(t, yaml.Unmarshal([]byte(files[name+".yaml"]), &doc))
				docs[name] = doc
			}
			agent, gateway := docs["agent"], docs["gateway"]
			number := func(doc any, keys ...string) int {
				v, ok := profile.Get(doc, keys...).(int)
				require.True(t, ok, "%s is not a number: %v", strings.Join(keys, "."), profile.Get(doc, keys...))
				return v
			}
			// byteBatch is the size a bytes-sized batch at keys splits to.
			byteBatch := func(doc any, keys ...string) int {
				batch := append(slices.Clone(keys), "sending_queue", "batch")
				require.Equal(t, "bytes", profile.Get(doc, append(batch, "sizer")...), "%s.sizer", strings.Join(batch, "."))
				require.Equal(t, 0, profile.Get(doc, append(batch, "min_size")...), "%s.min_size: split, never hold back", strings.Join(batch, "."))
				return number(doc, append(batch, "max_size")...)
			}
			intake := number(gateway, "receivers", "otlp", "protocols", "grpc", "max_recv_msg_size_mib") * mib
			spanLimit := number(agent, "processors", "span_limits", "max_span_size")
			assert.Equal(t, spanLimit, number(gateway, "processors", "span_limits", "max_span_size"),
				"the tiers' span_limits max_span_size")
			for _, resolver := range resolvers {
				exporter := "load_balancing/" + resolver
				toGateway := byteBatch(agent, "exporters", exporter, "protocol", "otlp")
				assert.Equal(t, intake, toGateway, "agent %s splits to what a gateway's gRPC intake accepts", exporter)
				assert.LessOrEqual(t, spanLimit+tierHeadroom, toGateway, "a span under the agent's max_span_size fits a request to a gateway")
			}
			backends := map[string][]string{
				"otlp_grpc/backend_memory":    {"exporters", "otlp_grpc/backend_memory"},
				"otlp_grpc/backend_disk":      {"exporters", "otlp_grpc/backend_disk"},
				"otlp_grpc/backend_secondary": {"exporters", "otlp_grpc/backend_secondary"},
			}
			for _, resolver := range resolvers {
				id := "load_balancing/backend_" + resolver
				backends[id+" (per shard)"] = []string{"exporters", id, "protocol", "otlp"}
			}
			for id, keys := range backends {
				assert.LessOrEqual(t, spanLimit+tierHeadroom, byteBatch(gateway, keys...),
					"a span under the gateway's max_span_size fits a request to %s", id)
			}
		})
	}
}

// TestTestsBuildWithTheBinarysProfile: with a profile-guided build profile
// (cmd/tailgate/default.pgo), the binary is built with it, and make test
// builds the tests with the same one (GOFLAGS -pgo): Go compiles every
// package of a PGO build for its profile, so tests built without it would
// reuse none of the binary's compiled packages, and would test code
// compiled otherwise than the binary's.
func TestTestsBuildWithTheBinarysProfile(t *testing.T) {
	pgo := filepath.Join(harness.RepoRoot(), "cmd", "tailgate", "default.pgo")
	if _, err := os.Stat(pgo); err != nil {
		t.Skipf("no %s: the binary is built without a profile", pgo)
	}
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	var built string
	for _, s := range info.Settings {
		if s.Key == "-pgo" {
			built = s.Value
		}
	}
	assert.Equal(t, "default.pgo", filepath.Base(built), "the binary's build settings name its profile")
	var tests string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if v, ok := strings.CutPrefix(f, "-pgo="); ok {
			tests = v
		}
	}
	require.NotEmpty(t, tests, "GOFLAGS (%q) sets no -pgo: run the tests through `make test`", os.Getenv("GOFLAGS"))
	same, err := sameFile(tests, pgo)
	require.NoError(t, err)
	assert.True(t, same, "the tests build with %s, the binary with %s", tests, pgo)
}

func sameFile(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
