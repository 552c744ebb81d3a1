package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// buildBaseline builds an otelcol-contrib-equivalent binary with ocb from
// tailgate's own manifest minus the in-house components (those with a
// `path:`): the same upstream components at the same versions, so the two
// binaries differ only by what tailgate adds. It is cached by manifest hash.
func buildBaseline(cacheDir string) (string, error) {
	root := harness.RepoRoot()
	data, err := os.ReadFile(filepath.Join(root, "builder-config.yaml"))
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", err
	}
	for _, kind := range []string{"receivers", "processors", "exporters", "connectors", "extensions", "converters"} {
		mods, _ := doc[kind].([]any)
		kept := mods[:0]
		for _, m := range mods {
			if _, inHouse := m.(map[string]any)["path"]; !inHouse {
				kept = append(kept, m)
			}
		}
		doc[kind] = kept
	}
	sum := sha256.Sum256(data)
	out := filepath.Join(cacheDir, "otelcol-baseline-"+hex.EncodeToString(sum[:6]))
	bin := filepath.Join(out, "otelcol-baseline")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	doc["dist"] = map[string]any{
		"name":        "otelcol-baseline",
		"description": "bench-only baseline: tailgate's upstream components, nothing in-house",
		"module":      "github.com/tailgate-dev/tailgate/bench/otelcol-baseline",
		"output_path": out,
		"version":     "0.0.0-baseline",
	}
	// Replace paths are relative to the manifest's output directory; make
	// them absolute for the new one.
	if repl, ok := doc["replaces"].([]any); ok {
		for i, r := range repl {
			old, target, _ := strings.Cut(r.(string), "=>")
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, ".") {
				target = filepath.Clean(filepath.Join(root, "cmd", "tailgate", target))
			}
			repl[i] = strings.TrimSpace(old) + " => " + target
		}
	}
	manifest, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	manifestPath := filepath.Join(out, "builder-config.yaml")
	if err := os.WriteFile(manifestPath, manifest, 0o644); err != nil {
		return "", err
	}
	fmt.Printf("building the baseline with ocb into %s (cached afterwards)\n", out)
	scratch, err := os.MkdirTemp("", "tailgate-ocb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	cmd, err := harness.OCB(scratch, "--config", manifestPath, "--skip-strict-versioning=false")
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ocb baseline build: %w", err)
	}
	return bin, nil
}
