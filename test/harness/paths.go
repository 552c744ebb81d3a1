package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/mod/modfile"
)

// repoModule is the module path of the repository's top go.mod.
const repoModule = "github.com/tailgate-dev/tailgate"

// RepoRoot is the repository's top directory, found from this source file so
// that tests and tools work from any working directory. Built with -trimpath
// (make test builds the tests as the binary is built, so that they share its
// compiled packages) the source file's path is relative; then it is the
// nearest directory above the working directory whose go.mod is the
// repository's (go test runs a test in its package's directory).
func RepoRoot() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}
	dir, err := os.Getwd()
	if err != nil {
		panic("harness: " + err.Error())
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(mod) == repoModule {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("harness: no go.mod of " + repoModule + " above the working directory")
		}
		dir = parent
	}
}

// ProfilePath is the path of a shipped profile ("agent" or "gateway").
func ProfilePath(profile string) string {
	return filepath.Join(RepoRoot(), "configs", profile+".yaml")
}

// GatewayFeatureGates is the flag the image's default command and the
// manifests give every gateway: tail_sampling's alpha gate recordpolicy,
// so a kept trace's spans name the policy that kept it (their scope's
// tailsampling.policy; the guard's keeps name rebalance_guard). A test
// checks that the image, the manifests and this agree; the harness starts
// gateways with it. README.md ("Why a trace was kept") gives the reasons,
// and why usetracestate stays off.
const GatewayFeatureGates = "--feature-gates=+processor.tailsamplingprocessor.recordpolicy"

// RunArgs are the arguments a tier runs config with, as the image and the
// manifests give them: --config, and for a gateway GatewayFeatureGates.
func RunArgs(profile, config string) []string {
	if profile == "gateway" {
		return []string{"--config", config, GatewayFeatureGates}
	}
	return []string{"--config", config}
}

// ConfigFlags are the collector flags that merge overlays (one more
// --config each, in order) over a configuration and then set (--set
// flags, "a::b::c=value", which win over every --config), as a user
// passes them.
func ConfigFlags(overlays []string, set ...string) []string {
	var flags []string
	for _, o := range overlays {
		flags = append(flags, "--config", o)
	}
	for _, s := range set {
		flags = append(flags, "--set="+s)
	}
	return flags
}

// BinaryPath is the tailgate binary under test: $TAILGATE_BIN, else bin/tailgate.
// It fails when the binary is missing instead of building it behind the
// caller's back: `make build` (or `make test`) builds it.
func BinaryPath() (string, error) {
	return existingBinary("TAILGATE_BIN", filepath.Join(RepoRoot(), "bin", "tailgate"), "make build")
}

// PlatformBinaryPath is the tailgate binary cross-compiled for linux/arch
// (the image's other platforms): $TAILGATE_BIN_LINUX_<ARCH> when set, else
// bin/linux-<arch>/tailgate as `make bin/linux-<arch>/tailgate` leaves it
// (scripts/build-platform-binary.sh: make rebuilds it when its sources
// changed, one build at a time).
func PlatformBinaryPath(arch string) (string, error) {
	if bin := os.Getenv("TAILGATE_BIN_LINUX_" + strings.ToUpper(arch)); bin != "" {
		return existingBinary("TAILGATE_BIN_LINUX_"+strings.ToUpper(arch), bin, "make bin/linux-"+arch+"/tailgate")
	}
	return installScript("build-platform-binary.sh", arch)
}

func existingBinary(envVar, fallback, build string) (string, error) {
	bin := os.Getenv(envVar)
	if bin == "" {
		bin = fallback
	}
	if _, err := os.Stat(bin); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("tailgate binary %s not found: run `%s` first (make test does)", bin, build)
		}
		return "", err
	}
	return bin, nil
}

// OCB is the pinned ocb (TAILGATE_OCB, which make installs) run with args
// from the repository root, where the manifest's relative component paths
// resolve, as in `make generate`. ocb makes a temporary directory for its
// default output path before it reads the manifest and leaves it behind when
// the manifest sets output_path, as every manifest here does: scratch, which
// the caller removes, is its TMPDIR, so nothing is left in the system's.
func OCB(scratch string, args ...string) (*exec.Cmd, error) {
	ocb := os.Getenv("TAILGATE_OCB")
	if ocb == "" {
		return nil, errors.New("TAILGATE_OCB is not set: run through make (make test, make bench), which installs the pinned ocb")
	}
	cmd := exec.Command(ocb, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "TMPDIR="+scratch)
	return cmd, nil
}

// ToolBinary builds (once, cached by version, see scripts/install-go-tool.sh)
// a third-party program the tests run and returns the path of one of its
// binaries: ToolBinary("prometheus", "promtool").
func ToolBinary(tool, binary string) (string, error) {
	dir, err := ToolDir(tool)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, binary), nil
}

// ToolDir builds (once, cached by version, see scripts/install-go-tool.sh)
// a third-party program the tests run and returns the directory of its
// binaries.
func ToolDir(tool string) (string, error) { return installScript("install-go-tool.sh", tool) }

// ReleaseInfo is the release's identity as scripts/release-info.sh reads
// it from its one home (builder-config.yaml, git): VERSION, DIST_VERSION,
// OTELCOL_CORE, OTELCOL_CONTRIB, REVISION, SOURCE, LICENSES.
func ReleaseInfo() (map[string]string, error) {
	out, err := exec.Command(filepath.Join(RepoRoot(), "scripts", "release-info.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("release-info.sh: %w", err)
	}
	info := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			info[k] = v
		}
	}
	return info, nil
}

// CertManagerCRDs is the directory of the CustomResourceDefinitions of the
// cert-manager release pinned in build/tools/cert-manager (fetched once
// from the module proxy, see scripts/install-crds.sh).
func CertManagerCRDs() (string, error) { return installScript("install-crds.sh", "cert-manager") }

// PrometheusOperatorCRDs is the directory of the CustomResourceDefinitions
// of the prometheus-operator release pinned in
// build/tools/prometheus-operator (fetched once from the module proxy, see
// scripts/install-crds.sh).
func PrometheusOperatorCRDs() (string, error) {
	return installScript("install-crds.sh", "prometheus-operator")
}

// installScript runs one of scripts/install-*.sh, which print the directory
// they installed into on their last line, and returns that directory.
func installScript(script string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(RepoRoot(), "scripts", script), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", script, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
