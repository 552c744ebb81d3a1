package main

// Choosing what `make bench -ceiling-only` measures: a subset of the
// configurations, extra ones to compare (a variant of a profile, a user's
// own config), and CPU profiles of the runs, so a change to a profile can
// be measured against the shipped one in the same run.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// profileSeconds is how long a run's CPU profile samples: shorter than the
// replay of the shortest run (a gateway's, ~6s at its ceiling here).
const profileSeconds = 4

type ceilingSelection struct {
	only    *regexp.Regexp
	extra   []tierConfig
	profDir string
	// pgoOut receives the merged profiles of the shipped tiers' profiled
	// runs (make pgo), "" for none.
	pgoOut string
}

// newCeilingSelection reads -only, -extra and -cpuprofile.
// extra is `name=tier:config[:VAR=value,...]` entries separated by ';'.
func newCeilingSelection(only, extra, profDir, tailgate string) (ceilingSelection, error) {
	sel := ceilingSelection{profDir: profDir}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return sel, fmt.Errorf("-only: %w", err)
		}
		sel.only = re
	}
	for _, e := range strings.Split(extra, ";") {
		if strings.TrimSpace(e) == "" {
			continue
		}
		name, rest, ok := strings.Cut(e, "=")
		parts := strings.SplitN(rest, ":", 3)
		if !ok || len(parts) < 2 || (parts[0] != "agent" && parts[0] != "gateway") {
			return sel, fmt.Errorf("-extra %q: want name=agent|gateway:config.yaml[:VAR=value,...]", e)
		}
		c := tierConfig{name: strings.TrimSpace(name), tier: parts[0], bin: tailgate, config: parts[1], env: map[string]string{}}
		if c.tier == "gateway" {
			c.args = []string{harness.GatewayFeatureGates} // as the shipped gateways run
		}
		if _, err := os.Stat(c.config); err != nil {
			return sel, fmt.Errorf("-extra %q: %w", e, err)
		}
		if len(parts) == 3 {
			for _, kv := range strings.Split(parts[2], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return sel, fmt.Errorf("-extra %q: %q is not VAR=value", e, kv)
				}
				if k == "bin" { // another build of tailgate, not an environment variable
					if _, err := os.Stat(v); err != nil {
						return sel, fmt.Errorf("-extra %q: bin: %w", e, err)
					}
					c.bin = v
					continue
				}
				c.env[k] = v
			}
		}
		sel.extra = append(sel.extra, c)
	}
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return sel, err
		}
	}
	return sel, nil
}

// partial reports whether the selection differs from the full set, whose
// goals and compression runs the report needs.
func (s ceilingSelection) partial() bool { return s.only != nil || len(s.extra) > 0 }

func (s ceilingSelection) apply(configs []tierConfig) []tierConfig {
	var out []tierConfig
	for _, c := range configs {
		if (s.only == nil && !c.optional) || (s.only != nil && s.only.MatchString(c.name)) {
			out = append(out, c)
		}
	}
	return append(out, s.extra...)
}

// profileFile is where run i of c writes its CPU profile, "" for none.
func (s ceilingSelection) profileFile(c tierConfig, i int) string {
	if s.profDir == "" {
		return ""
	}
	return filepath.Join(s.profDir, fmt.Sprintf("%s.run%d.pprof", fileName(c.name), i+1))
}

// fileName is a configuration's name as part of a file name.
func fileName(config string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == ',' || r == '=' || r == '/' {
			return '_'
		}
		return r
	}, config)
}

// captureCPUProfile samples the process's CPU through its pprof extension.
func captureCPUProfile(port int, file string) error {
	client := http.Client{Timeout: (profileSeconds + 10) * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, profileSeconds))
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
