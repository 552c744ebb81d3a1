package distribution

import (
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

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// validate runs `tailgate validate` on a profile with the given environment
// over harness.CheckoutEnv: nothing leaks in from the developer's shell.
func validate(t *testing.T, profile string, env ...string) (string, error) {
	t.Helper()
	return validateWithOverlays(t, profile, nil, env...)
}

// validateWithOverlays is validate on the profile merged with overlay
// files, each one more --config, as a user runs them.
func validateWithOverlays(t *testing.T, profile string, overlays []string, env ...string) (string, error) {
	t.Helper()
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	args := []string{"validate", "--config", harness.ProfilePath(profile)}
	for _, o := range overlays {
		args = append(args, "--config", o)
	}
	cmd := exec.Command(bin, args...)
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cmd.Env = harness.CheckoutEnv(vars)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProfilesValidateWithNoEnvironment: nothing but the gateway's policies
// file (which the image ships at the default path) is needed.
func TestProfilesValidateWithNoEnvironment(t *testing.T) {
	for _, p := range profile.Names {
		t.Run(p, func(t *testing.T) {
			out, err := validate(t, p)
			assert.NoError(t, err, "tailgate validate --config configs/%s.yaml with no env:\n%s", p, out)
		})
	}
}

// TestAgentResolversValidate: each resolver the agent offers is a complete
// configuration, not only the default one.
func TestAgentResolversValidate(t *testing.T) {
	for _, env := range [][]string{
		{"TAILGATE_GATEWAY_RESOLVER=dns"},
		{"TAILGATE_GATEWAY_RESOLVER=k8s", "TAILGATE_GATEWAY_K8S_SERVICE=gw.observability"},
		{"TAILGATE_GATEWAY_RESOLVER=static", "TAILGATE_GATEWAY_STATIC_HOSTNAMES=[10.0.0.1:4317, 10.0.0.2:4317]"},
	} {
		t.Run(env[0], func(t *testing.T) {
			out, err := validate(t, "agent", env...)
			assert.NoError(t, err, out)
		})
	}
}

// TestInvalidSettingsNameTheKey: a bad value fails validation with an error
// that names the offending key, so an operator can find it.
func TestInvalidSettingsNameTheKey(t *testing.T) {
	cases := []struct {
		profile, env string
		wantKeys     []string
	}{
		// The variable feeds tail_sampling and rebalance_guard; the collector
		// names the first component it decodes, in map order: either.
		{"gateway", "TAILGATE_DECISION_WAIT=soon", []string{"decision_wait", "tail_sampling|rebalance_guard"}},
		{"gateway", "TAILGATE_SAMPLING_PERCENTAGE=lots", []string{"tail_sampling", "sampling_percentage"}},
		{"gateway", "TAILGATE_METRICS_EXPORTERS=[nosuchexporter]", []string{"metrics/spanmetrics", "nosuchexporter"}},
		{"agent", "TAILGATE_GATEWAY_RESOLVER=consul", []string{"traces", "load_balancing/consul"}},
		// A gateway bound to 0.0.0.0 cannot tell its guard which address the
		// agents' resolver lists for it: refused rather than keep everything.
		{"gateway", "MY_POD_IP=0.0.0.0", []string{"rebalance_guard", "self", "0.0.0.0"}},
		{"agent", "TAILGATE_K8S_PASSTHROUGH=maybe", []string{"k8s_attributes", "passthrough"}},
		{"agent", "TAILGATE_GATEWAY_COMPRESSION=brotli", []string{"protocol.otlp.compression", "brotli"}},
		// The user's policies file: the policy and the key, at validate
		// time (samplingpolicyconverter; upstream checks policies at start
		// only, and ignores a misspelt policy-level key).
		{"gateway", "TAILGATE_POLICIES_FILE=" + filepath.Join("testdata", "bad-policies.yaml"), []string{`policy "slow"`, "treshold_ms"}},
		{"gateway", "TAILGATE_POLICIES_FILE=" + filepath.Join("testdata", "stray-key-policies.yaml"), []string{`policy "slow"`, "latncy"}},
		{"gateway", "TAILGATE_POLICIES_FILE=/no/such/policies.yaml", []string{"/no/such/policies.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			out, err := validate(t, c.profile, c.env)
			require.Error(t, err, "validate accepted %s", c.env)
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
			out, err := validateWithOverlays(t, c.profile, []string{filepath.Join("testdata", c.overlay)}, "TAILGATE_K8S_PASSTHROUGH=true")
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

// TestEveryProfileVariableIsDocumented: README.md's variable table lists
// every variable the profiles read, and no variable they do not read.
func TestEveryProfileVariableIsDocumented(t *testing.T) {
	used := map[string]bool{}
	for _, p := range append(slices.Clone(profile.Names), "policies") {
		vars, err := profile.Variables(p)
		require.NoError(t, err)
		for name := range vars {
			used[name] = true
		}
	}
	readme, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	require.NoError(t, err)
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if m := regexp.MustCompile("^\\| `([A-Z0-9_]+)` \\|").FindStringSubmatch(line); m != nil {
			documented[m[1]] = true
		}
	}
	assert.Equal(t, sortedKeys(used), sortedKeys(documented), "profile variables vs README.md table")
}

// TestReferenceMappingNamesDocumentedVariables: every variable README.md's
// "Coming from the reference configs" section names is one of the table's,
// and the section maps at least the settings its table rows promise.
func TestReferenceMappingNamesDocumentedVariables(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	require.NoError(t, err)
	text := string(readme)
	documented := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if m := regexp.MustCompile("^\\| `([A-Z0-9_]+)` \\|").FindStringSubmatch(line); m != nil {
			documented[m[1]] = true
		}
	}
	start := strings.Index(text, "### Coming from the reference configs")
	require.NotEqual(t, -1, start, "README.md has no section \"Coming from the reference configs\"")
	section := text[start:]
	if end := strings.Index(section[1:], "\n#"); end >= 0 {
		section = section[:end+1]
	}
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
