package distribution

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
)

// The release's identity lives in builder-config.yaml's dist.version
// (VERSION+otelcol.core.<core>.contrib.<contrib>), read by
// scripts/release-info.sh; these tests hold every other place to it.

// TestVersionNamesTheUpstreamReleases: `tailgate --version` prints the
// distribution's version with the core and contrib releases it bundles,
// and those are the versions of the components the binary is built from.
func TestVersionNamesTheUpstreamReleases(t *testing.T) {
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "tailgate version "+info["DIST_VERSION"], strings.TrimSpace(string(out)))
	assert.Equal(t, loadManifest(t).Dist.Version, info["DIST_VERSION"])

	// The core release is otelcol's, the contrib release every contrib
	// component's (k8sattributesprocessor is a v1 module of that release).
	mod := parseMod(t, filepath.Join(harness.RepoRoot(), "cmd", "tailgate", "go.mod"))
	for _, r := range mod.Require {
		if r.Mod.Path == "go.opentelemetry.io/collector/otelcol" {
			assert.Equal(t, info["OTELCOL_CORE"], r.Mod.Version, "the core release in --version and the collector core the binary links")
		}
	}
	contrib := 0
	for kind, mods := range manifestModules(t) {
		for _, m := range mods {
			path, version, _ := strings.Cut(m.GoMod, " ")
			if strings.HasPrefix(path, "github.com/open-telemetry/opentelemetry-collector-contrib/") && strings.HasPrefix(version, "v0.") {
				contrib++
				assert.Equal(t, info["OTELCOL_CONTRIB"], version, "%s %s: the contrib release in --version", kind, path)
			}
		}
	}
	assert.Positive(t, contrib)
}

// TestChartVersionIsTheRelease: the Helm chart's version and appVersion
// are the distribution's version (so the chart's default image tag is the
// release's image), and its annotations name the same upstream releases.
func TestChartVersionIsTheRelease(t *testing.T) {
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "helm", "tailgate", "Chart.yaml"))
	require.NoError(t, err)
	var chart struct {
		Version     string            `yaml:"version"`
		AppVersion  string            `yaml:"appVersion"`
		Annotations map[string]string `yaml:"annotations"`
	}
	require.NoError(t, yaml.Unmarshal(data, &chart))
	assert.Equal(t, info["VERSION"], chart.Version, "Chart.yaml version")
	assert.Equal(t, info["VERSION"], chart.AppVersion, "Chart.yaml appVersion")
	assert.Equal(t, info["OTELCOL_CORE"], chart.Annotations["tailgate.dev/otelcol-core"])
	assert.Equal(t, info["OTELCOL_CONTRIB"], chart.Annotations["tailgate.dev/otelcol-contrib"])
}

// TestDefaultImageIsWhereAReleasePublishes: the chart's and the kustomize
// base's default image is the one `make release` publishes (the Makefile's
// IMAGE_REPO), at the release's version, so an install that sets nothing
// pulls what the release pushed.
func TestDefaultImageIsWhereAReleasePublishes(t *testing.T) {
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	makefile, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^IMAGE_REPO \?= (\S+)$`).FindSubmatch(makefile)
	require.NotNil(t, m, "the Makefile sets no IMAGE_REPO default")
	published := string(m[1])

	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "helm", "tailgate", "values.yaml"))
	require.NoError(t, err)
	var values struct {
		Image struct{ Repository, Tag string } `yaml:"image"`
	}
	require.NoError(t, yaml.Unmarshal(data, &values))
	assert.Equal(t, published, values.Image.Repository, "the chart's image.repository")
	assert.Empty(t, values.Image.Tag, "the chart's image.tag: empty, the appVersion (TestChartVersionIsTheRelease)")

	base, err := render.BaseImage()
	require.NoError(t, err)
	assert.Equal(t, published+":"+info["VERSION"], base, "the base's image: the release's, at its version")
}

// TestSBOMListsEveryComponent: the CycloneDX bill of materials `make sbom`
// writes for the shipped binaries (host and arm64) names the release and
// lists every component of builder-config.yaml at its pinned version: an
// upstream one by its module path, an in-house one by the directory the
// binary was built from (the toolchain records the local replacement).
func TestSBOMListsEveryComponent(t *testing.T) {
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	host, err := harness.BinaryPath()
	require.NoError(t, err)
	arm64, err := harness.PlatformBinaryPath("arm64")
	require.NoError(t, err)
	for name, bin := range map[string]string{"host": host, "arm64": arm64} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sbom.cdx.json")
			cmd := exec.Command(filepath.Join(harness.RepoRoot(), "scripts", "sbom.sh"), bin, out)
			output, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", output)
			data, err := os.ReadFile(out)
			require.NoError(t, err)
			var bom struct {
				BOMFormat   string `json:"bomFormat"`
				SpecVersion string `json:"specVersion"`
				Metadata    struct {
					Component struct {
						Name, Version string
					} `json:"component"`
				} `json:"metadata"`
				Components []struct {
					Name, Version, Purl string
				} `json:"components"`
			}
			require.NoError(t, json.Unmarshal(data, &bom))
			assert.Equal(t, "CycloneDX", bom.BOMFormat)
			assert.NotEmpty(t, bom.SpecVersion)
			assert.Equal(t, loadManifest(t).Dist.Module, bom.Metadata.Component.Name)
			assert.Equal(t, info["VERSION"], bom.Metadata.Component.Version)

			listed := map[string]string{}
			for _, c := range bom.Components {
				listed[c.Name] = c.Version
			}
			n := 0
			for kind, mods := range manifestModules(t) {
				for _, m := range mods {
					path, version, _ := strings.Cut(m.GoMod, " ")
					if m.Path != "" {
						// ocb replaces it with ../../<path> from cmd/tailgate.
						path, version = filepath.Join("..", "..", m.Path), "(devel)"
					}
					n++
					assert.Equal(t, version, listed[path], "%s %s in the SBOM of %s", kind, path, bin)
				}
			}
			assert.Greater(t, len(bom.Components), n, "the SBOM lists the components' dependencies too")
		})
	}
}

// manifestModules are builder-config.yaml's modules by kind, converters
// included.
func manifestModules(t *testing.T) map[string][]module {
	m := loadManifest(t)
	mods := m.byKind()
	mods["converters"] = m.Converters
	return mods
}
