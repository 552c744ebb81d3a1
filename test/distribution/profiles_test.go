package distribution

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/docs"
	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// run is one `tailgate validate` of a profile: env over harness.Environ
// (nothing leaks in from the developer's shell), overlays as more
// --config, and collector --set flags, as a user runs them.
type run struct {
	env      map[string]string
	overlays []string
	set      []string
}

func validate(t *testing.T, profile string, r run) (string, error) {
	t.Helper()
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	args := []string{"validate", "--config", harness.ProfilePath(profile)}
	cmd := exec.Command(bin, append(args, harness.ConfigFlags(r.overlays, r.set...)...)...)
	cmd.Env = harness.Environ(r.env)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProfilesValidateWithNoEnvironment: a profile from this checkout
// needs no variable, no file and no flag to validate.
func TestProfilesValidateWithNoEnvironment(t *testing.T) {
	for _, p := range profile.Names {
		t.Run(p, func(t *testing.T) {
			out, err := validate(t, p, run{})
			assert.NoError(t, err, "tailgate validate --config configs/%s.yaml with no env:\n%s", p, out)
		})
	}
}

// TestReadmeOverlayValidates: the gateway overlay README.md gives a
// newcomer (a backend and a first policy list) is one the binary accepts.
func TestReadmeOverlayValidates(t *testing.T) {
	section, err := docs.Section("README.md", "## Your backend and your first policy")
	require.NoError(t, err)
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok, "the section has no YAML block")
	block, _, _ = strings.Cut(block, "```")
	overlay := filepath.Join(t.TempDir(), "gateway-overlay.yaml")
	require.NoError(t, os.WriteFile(overlay, []byte(block), 0o644))
	out, err := validate(t, "gateway", run{overlays: []string{overlay}})
	assert.NoError(t, err, "README.md's overlay:\n%s\n%s", block, out)
}

// TestAgentResolversValidate: each resolver the agent offers is a complete
// configuration, not only the default one.
func TestAgentResolversValidate(t *testing.T) {
	for _, env := range []map[string]string{
		{"TAILGATE_GATEWAY_RESOLVER": "dns"},
		{"TAILGATE_GATEWAY_RESOLVER": "k8s", "TAILGATE_GATEWAY_K8S_SERVICE": "gw.observability"},
		{"TAILGATE_GATEWAY_RESOLVER": "static", "TAILGATE_GATEWAY_STATIC_HOSTNAMES": "[10.0.0.1:4317, 10.0.0.2:4317]"},
	} {
		t.Run(env["TAILGATE_GATEWAY_RESOLVER"], func(t *testing.T) {
			out, err := validate(t, "agent", run{env: env})
			assert.NoError(t, err, out)
		})
	}
}

// TestInvalidSettingsNameTheKey: a bad value fails validation with an error
// that names the offending key, so an operator can find it.
func TestInvalidSettingsNameTheKey(t *testing.T) {
	cases := []struct {
		name, profile string
		run           run
		wantKeys      []string
	}{
		// The guard takes tail_sampling's value; the collector names the
		// first component it decodes, in map order: either.
		{"decision_wait", "gateway", run{set: []string{"processors::tail_sampling::decision_wait=soon"}}, []string{"tail_sampling|rebalance_guard", "decision_wait"}},
		// The guard takes tail_sampling's decision_wait (samplingpolicyconverter):
		// one of its own would be a second window.
		{"a guard's own decision_wait", "gateway", run{set: []string{"processors::rebalance_guard/dns::decision_wait=30s"}},
			[]string{"processors::rebalance_guard/dns::decision_wait: 30s", "processors::tail_sampling::decision_wait is 10s"}},
		// Through the dns resolver the tier must agree on a change (5s of
		// cluster DNS caching + interval + timeout) before tail_sampling
		// decides what the change split: upstream's 5s interval does not.
		{"dns interval", "gateway", run{env: map[string]string{"TAILGATE_GATEWAY_RESOLVER": "dns"}, set: []string{"processors::rebalance_guard/dns::resolver::dns::interval=5s"}},
			[]string{"rebalance_guard/dns", "resolver::dns::interval", "11s", "decision_wait (10s)"}},
		{"metrics exporter", "gateway", run{set: []string{"service::pipelines::metrics/spanmetrics::exporters=[nosuchexporter]"}}, []string{"metrics/spanmetrics", "nosuchexporter"}},
		{"resolver", "agent", run{env: map[string]string{"TAILGATE_GATEWAY_RESOLVER": "consul"}}, []string{"traces", "load_balancing/consul"}},
		// A gateway bound to 0.0.0.0 cannot tell its guard which address the
		// agents' resolver lists for it: refused rather than keep everything.
		{"pod IP", "gateway", run{env: map[string]string{"MY_POD_IP": "0.0.0.0"}}, []string{"rebalance_guard", "self", "0.0.0.0"}},
		{"passthrough", "agent", run{set: []string{"processors::k8s_attributes::passthrough=maybe"}}, []string{"k8s_attributes", "passthrough"}},
		{"compression", "agent", run{set: []string{"exporters::load_balancing/dns::protocol::otlp::compression=brotli"}}, []string{"protocol.otlp.compression", "brotli"}},
		// The user's policies: the policy and the key, at validate time
		// (samplingpolicyconverter; upstream checks policies at start
		// only, and ignores a misspelt policy-level key).
		{"policy key", "gateway", run{overlays: []string{filepath.Join("testdata", "bad-policies-overlay.yaml")}}, []string{`policy "slow"`, "treshold_ms"}},
		{"policy-level key", "gateway", run{overlays: []string{filepath.Join("testdata", "stray-key-policies-overlay.yaml")}}, []string{`policy "slow"`, "latncy"}},
		{"missing overlay", "gateway", run{overlays: []string{"/no/such/overlay.yaml"}}, []string{"/no/such/overlay.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := validate(t, c.profile, c.run)
			require.Error(t, err, "validate accepted %+v", c.run)
			for _, k := range c.wantKeys {
				// "a|b": the error names one of them.
				assert.True(t, slices.ContainsFunc(strings.Split(k, "|"), func(alt string) bool { return strings.Contains(out, alt) }),
					"%q does not name %s", out, k)
			}
		})
	}
}

// TestOverlaysAreValidatedMerged: `tailgate validate` judges a profile
// merged with a user's overlays: an overlay that adds a backend with its
// credential, an attribute redaction and an exporter passes; one that
// would unguard the gateways or split traces between them is refused by
// the key it broke.
func TestOverlaysAreValidatedMerged(t *testing.T) {
	cases := []struct {
		profile, overlay string
		wantKeys         []string // nil: valid
	}{
		{"gateway", "backend-overlay.yaml", nil},
		{"gateway", "unguarded-overlay.yaml", []string{"service::pipelines::traces/sampling::processors", "tail_sampling runs without a rebalance_guard"}},
		{"agent", "by-service-overlay.yaml", []string{"exporters::load_balancing/dns::routing_key", `"service"`}},
	}
	for _, c := range cases {
		t.Run(c.overlay, func(t *testing.T) {
			out, err := validate(t, c.profile, run{overlays: []string{filepath.Join("testdata", c.overlay)}})
			if c.wantKeys == nil {
				require.NoError(t, err, out)
				return
			}
			require.Error(t, err, "validate accepted %s", c.overlay)
			for _, k := range c.wantKeys {
				assert.Contains(t, out, k)
			}
		})
	}
}

// remainingVariables are the only environment variables the profiles
// read: the pod's own facts, and where the gateways are, which both tiers
// must agree on and the manifests set from one place. Everything else is
// YAML (70 variables before overlays, at most 25 by design).
var remainingVariables = []string{
	"K8S_NODE_NAME", "MY_POD_IP", "TAILGATE_CLUSTER_NAME",
	"TAILGATE_GATEWAY_DNS_NAME", "TAILGATE_GATEWAY_K8S_SERVICE", "TAILGATE_GATEWAY_OTLP_PORT",
	"TAILGATE_GATEWAY_RESOLVER", "TAILGATE_GATEWAY_STATIC_HOSTNAMES",
}

// TestEveryProfileVariableIsDocumented: the profiles read exactly
// remainingVariables, and docs/configuration.md's variable table lists
// exactly them.
func TestEveryProfileVariableIsDocumented(t *testing.T) {
	used, err := profile.AllVariables()
	require.NoError(t, err)
	assert.Equal(t, remainingVariables, slices.Sorted(maps.Keys(used)), "the variables the profiles read")
	documented := map[string]bool{}
	for _, row := range configurationTable(t, "## Environment variables") {
		documented[strings.Trim(row[0], "`")] = true
	}
	assert.Equal(t, remainingVariables, sortedKeys(documented), "docs/configuration.md's variable table")
}

// TestRetiredVariablesMapToKeys: docs/configuration.md's migration table names, for
// each retired variable, a key the profile of its tier has, or the section
// it goes in (<resolver> read as each resolver), and no variable a profile
// still reads.
func TestRetiredVariablesMapToKeys(t *testing.T) {
	rows := configurationTable(t, "## Migrating from environment variables")
	require.GreaterOrEqual(t, len(rows), 70-len(remainingVariables), "a row for every retired variable")
	raw := map[string]map[string]any{}
	for _, p := range profile.Names {
		doc, err := profile.Raw(p)
		require.NoError(t, err)
		raw[p] = doc
	}
	key := regexp.MustCompile("`([a-z_0-9]+(?:::[a-zA-Z_0-9/<>.]+)+)`")
	for _, row := range rows {
		name := strings.Trim(row[0], "`")
		assert.NotContains(t, remainingVariables, name, "%s is still read", name)
		tiers := []string{row[1]}
		if row[1] == "both" {
			tiers = profile.Names
		}
		keys := key.FindAllStringSubmatch(row[2], -1)
		require.NotEmpty(t, keys, "%s maps to no key", name)
		for _, tier := range tiers {
			for _, k := range keys[:1] { // the first key is the one it becomes
				found := false
				for _, resolver := range resolvers {
					path := strings.Split(strings.ReplaceAll(k[1], "<resolver>", resolver), "::")
					if profile.Get(raw[tier], path...) != nil || profile.Get(raw[tier], path[:len(path)-1]...) != nil {
						found = true
					}
				}
				assert.True(t, found, "%s: the %s profile has no %s", name, tier, k[1])
			}
		}
	}
}

// configurationTable is the rows of the first table under a heading of
// docs/configuration.md.
func configurationTable(t *testing.T, heading string) [][]string {
	t.Helper()
	rows, err := docs.Table("docs/configuration.md", heading)
	require.NoError(t, err)
	return rows
}

// TestReferenceMappingNamesDocumentedVariables: every variable the
// "Coming from the reference configs" section of docs/configuration.md
// names is one of the variable table's.
func TestReferenceMappingNamesDocumentedVariables(t *testing.T) {
	documented := map[string]bool{}
	for _, name := range remainingVariables {
		documented[name] = true
	}
	section, err := docs.Section("docs/configuration.md", "## Coming from the reference configs")
	require.NoError(t, err)
	named := regexp.MustCompile("`((?:TAILGATE_|MY_|K8S_)[A-Z0-9_]+)").FindAllStringSubmatch(section, -1)
	require.NotEmpty(t, named)
	for _, m := range named {
		assert.True(t, documented[m[1]], "the reference mapping names %s, which the variable table does not list", m[1])
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
