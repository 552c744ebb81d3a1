// Package distribution tests the distribution as shipped: the generated
// sources against the ocb manifest, the binary's component list, and the
// profiles under `tailgate validate`.
package distribution

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/modfile"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// manifest is the part of builder-config.yaml the tests read.
type manifest struct {
	Dist struct {
		Module     string `yaml:"module"`
		OutputPath string `yaml:"output_path"`
		Version    string `yaml:"version"`
	} `yaml:"dist"`
	Receivers  []module `yaml:"receivers"`
	Processors []module `yaml:"processors"`
	Exporters  []module `yaml:"exporters"`
	Connectors []module `yaml:"connectors"`
	Extensions []module `yaml:"extensions"`
	Providers  []module `yaml:"providers"`
	Converters []module `yaml:"converters"`
	Replaces   []string `yaml:"replaces"`
}

type module struct {
	GoMod string `yaml:"gomod"`
	// Path is an in-house component's directory, relative to the manifest.
	Path string `yaml:"path"`
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "builder-config.yaml"))
	require.NoError(t, err)
	var m manifest
	require.NoError(t, yaml.Unmarshal(data, &m))
	return m
}

func (m manifest) byKind() map[string][]module {
	return map[string][]module{
		"receivers": m.Receivers, "processors": m.Processors, "exporters": m.Exporters,
		"connectors": m.Connectors, "extensions": m.Extensions, "providers": m.Providers,
	}
}

// ocb is the pinned ocb with args and its scratch directory (harness.OCB),
// in the test's temporary directory.
func ocb(t *testing.T, args ...string) (cmd *exec.Cmd, scratch string) {
	t.Helper()
	scratch = t.TempDir()
	cmd, err := harness.OCB(scratch, args...)
	require.NoError(t, err)
	return cmd, scratch
}

// TestGeneratedCodeInSync regenerates the sources from builder-config.yaml
// into a temporary directory and compares them with cmd/tailgate: a manifest
// edit without `make generate` fails here.
func TestGeneratedCodeInSync(t *testing.T) {
	root := harness.RepoRoot()
	data, err := os.ReadFile(filepath.Join(root, "builder-config.yaml"))
	require.NoError(t, err)

	// Same manifest, other output directory.
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(data, &doc))
	out := t.TempDir()
	doc["dist"].(map[string]any)["output_path"] = out
	tmpManifest := filepath.Join(t.TempDir(), "builder-config.yaml")
	patched, err := yaml.Marshal(doc)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tmpManifest, patched, 0o644))

	cmd, scratch := ocb(t, "--config", tmpManifest, "--skip-compilation", "--skip-get-modules")
	outBytes, err := cmd.CombinedOutput()
	require.NoError(t, err, "ocb: %s", outBytes)
	// ocb's default output directory, left behind, went to the scratch
	// directory the test removes, not to the system's.
	leftovers, err := filepath.Glob(filepath.Join(scratch, "otelcol-distribution*"))
	require.NoError(t, err)
	assert.NotEmpty(t, leftovers, "ocb did not take its TMPDIR from harness.OCB")

	generated, err := filepath.Glob(filepath.Join(out, "*.go"))
	require.NoError(t, err)
	require.NotEmpty(t, generated)
	committedDir := filepath.Join(root, "cmd", "tailgate")
	committed, err := filepath.Glob(filepath.Join(committedDir, "*.go"))
	require.NoError(t, err)
	assert.Equal(t, baseNames(generated), baseNames(committed), "set of generated files differs: run `make generate`")
	for _, g := range generated {
		want, err := os.ReadFile(g)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(committedDir, filepath.Base(g)))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "cmd/tailgate/%s is out of date with builder-config.yaml: run `make generate`", filepath.Base(g))
	}

	// go.mod is written by ocb's `go mod tidy` (not run here): check that it
	// holds what the manifest decides, each component at its version and
	// every replace.
	mod := parseMod(t, filepath.Join(committedDir, "go.mod"))
	required := map[string]string{}
	for _, r := range mod.Require {
		required[r.Mod.Path] = r.Mod.Version
	}
	for kind, mods := range loadManifest(t).byKind() {
		for _, m := range mods {
			path, version, _ := strings.Cut(m.GoMod, " ")
			assert.Equal(t, version, required[path], "cmd/tailgate/go.mod: %s %s: run `make generate`", kind, path)
		}
	}
	replaced := map[string]string{}
	for _, r := range mod.Replace {
		replaced[r.Old.String()] = r.New.String()
	}
	for _, line := range loadManifest(t).Replaces {
		want, err := modfile.Parse("replace.mod", []byte("module x\nreplace "+line+"\n"), nil)
		require.NoError(t, err, line)
		r := want.Replace[0]
		assert.Equal(t, r.New.String(), replaced[r.Old.String()], "cmd/tailgate/go.mod replace %q: run `make generate`", line)
	}
}

// TestOCBMatchesCoreVersion: ocb writes its own otelcol version into the
// generated go.mod, so the Makefile's OCB_VERSION must be the core release
// of the manifest.
func TestOCBMatchesCoreVersion(t *testing.T) {
	cmd, _ := ocb(t, "version")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	fields := strings.Fields(string(out))
	ocbVersion := strings.TrimPrefix(fields[len(fields)-1], "v")
	mod := parseMod(t, filepath.Join(harness.RepoRoot(), "cmd", "tailgate", "go.mod"))
	var core string
	for _, r := range mod.Require {
		if r.Mod.Path == "go.opentelemetry.io/collector/otelcol" {
			core = strings.TrimPrefix(r.Mod.Version, "v")
		}
	}
	assert.Equal(t, core, ocbVersion, "OCB_VERSION in the Makefile must equal the collector core version")
}

// TestComponentsMatchManifest checks `tailgate components` against the
// manifest, so a component cannot silently go missing from the binary.
func TestComponentsMatchManifest(t *testing.T) {
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	out, err := exec.Command(bin, "components").Output()
	require.NoError(t, err)
	type entry struct {
		Module string `yaml:"module"`
	}
	var components struct {
		Receivers  []entry `yaml:"receivers"`
		Processors []entry `yaml:"processors"`
		Exporters  []entry `yaml:"exporters"`
		Connectors []entry `yaml:"connectors"`
		Extensions []entry `yaml:"extensions"`
		Providers  []entry `yaml:"providers"`
	}
	require.NoError(t, yaml.Unmarshal(out, &components))
	listed := map[string][]entry{
		"receivers": components.Receivers, "processors": components.Processors,
		"exporters": components.Exporters, "connectors": components.Connectors,
		"extensions": components.Extensions, "providers": components.Providers,
	}

	for kind, mods := range loadManifest(t).byKind() {
		var want, got []string
		for _, m := range mods {
			want = append(want, m.GoMod)
		}
		for _, c := range listed[kind] {
			got = append(got, c.Module)
		}
		sort.Strings(want)
		sort.Strings(got)
		assert.Equal(t, want, got, "%s in `tailgate components` vs builder-config.yaml", kind)
	}
}

func parseMod(t *testing.T, path string) *modfile.File {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := modfile.Parse(path, data, nil)
	require.NoError(t, err)
	return f
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	sort.Strings(out)
	return out
}
