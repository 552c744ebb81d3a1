// Package profile loads the shipped profiles (configs/agent.yaml and
// configs/gateway.yaml): as written, as the built binary resolves them for
// a given environment, and the variables they read. It is the one place
// tests read a profile; nothing here re-implements the collector's
// `${env:...}` expansion.
package profile

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// Names are the shipped profiles.
var Names = []string{"agent", "gateway"}

// Raw is a profile as written: keys and structure, `${env:...}` references
// unexpanded (YAML anchors and merge keys applied).
func Raw(name string) (map[string]any, error) {
	data, err := os.ReadFile(harness.ProfilePath(name))
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	return doc, yaml.Unmarshal(data, &doc)
}

// Effective is the configuration the built binary runs a profile with,
// given env (over harness.Environ) and collector --set flags: `tailgate print-config` expands it with
// the collector's own confmap resolver, decodes every component's section
// into its config with the component's defaults, validates it, and prints
// the result.
func Effective(name string, env map[string]string, set ...string) (map[string]any, error) {
	return EffectiveWith(name, env, nil, set...)
}

// EffectiveWith is Effective with overlays merged over the profile, each
// one more --config, as a user runs them.
func EffectiveWith(name string, env map[string]string, overlays []string, set ...string) (map[string]any, error) {
	bin, err := harness.BinaryPath()
	if err != nil {
		return nil, err
	}
	args := []string{"print-config", "--mode", "unredacted", "--config", harness.ProfilePath(name)}
	cmd := exec.Command(bin, append(args, harness.ConfigFlags(overlays, set...)...)...)
	cmd.Env = harness.Environ(env)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tailgate print-config --config configs/%s.yaml: %w\n%s", name, err, stderr.String())
	}
	var doc map[string]any
	return doc, yaml.Unmarshal(out, &doc)
}

// envRef is an innermost `${env:NAME}` or `${env:NAME:-default}`
// reference: one whose default holds no other reference.
var envRef = regexp.MustCompile(`\$\{env:([A-Za-z0-9_]+)(?::-([^}$]*))?\}`)

// Variables are the environment variables a profile reads, with their
// defaults as written. Comments are skipped: they may show the syntax with
// placeholder names.
func Variables(name string) (map[string]string, error) {
	data, err := os.ReadFile(harness.ProfilePath(name))
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		// Innermost first, each replaced by its default, as the collector
		// expands a reference nested in another's default.
		for m := envRef.FindStringSubmatchIndex(line); m != nil; m = envRef.FindStringSubmatchIndex(line) {
			name, def := line[m[2]:m[3]], ""
			if m[4] >= 0 {
				def = line[m[4]:m[5]]
			}
			vars[name] = def
			line = line[:m[0]] + def + line[m[1]:]
		}
	}
	return vars, nil
}

// AllVariables are the variables either profile reads, with their
// defaults as written (the gateway's where both read one).
func AllVariables() (map[string]string, error) {
	out := map[string]string{}
	for _, name := range Names {
		vars, err := Variables(name)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, vars)
	}
	return out, nil
}

// Get walks a parsed YAML document by keys, a list by the index a key
// spells ("0"); nil where a key is missing.
func Get(doc any, keys ...string) any {
	for _, k := range keys {
		switch node := doc.(type) {
		case map[string]any:
			doc = node[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(node) {
				return nil
			}
			doc = node[i]
		default:
			return nil
		}
	}
	return doc
}
