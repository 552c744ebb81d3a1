package image

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestImageCarriesTheReleaseIdentity: the image's labels and its
// manifest's annotations name the release (version, revision, source,
// licences) and the upstream collector releases it bundles, all as
// scripts/release-info.sh reads them from their one home.
func TestImageCarriesTheReleaseIdentity(t *testing.T) {
	img := buildFor(t, "linux/amd64", hostBinary(t))
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)
	want := map[string]string{
		"org.opencontainers.image.version":     info["VERSION"],
		"org.opencontainers.image.revision":    info["REVISION"],
		"org.opencontainers.image.source":      info["SOURCE"],
		"org.opencontainers.image.licenses":    info["LICENSES"],
		"dev.tailgate.otelcol.core.version":    info["OTELCOL_CORE"],
		"dev.tailgate.otelcol.contrib.version": info["OTELCOL_CONTRIB"],
	}
	for k, v := range want {
		require.NotEmpty(t, v, "release-info.sh gives no value for %s", k)
		assert.Equal(t, v, img.Config.Labels[k], "label %s", k)
		assert.Equal(t, v, img.Annotations[k], "annotation %s", k)
	}
	assert.Equal(t, "tailgate", img.Config.Labels["org.opencontainers.image.title"])
	// The licence the label names ships in the image.
	licence, err := os.ReadFile(filepath.Join(img.RootFS, "usr", "share", "doc", "tailgate", "LICENSE"))
	require.NoError(t, err)
	assert.Contains(t, string(licence), "Apache License")
	assert.Equal(t, "Apache-2.0", info["LICENSES"])
}

// TestArm64ImageRunsUnderEmulation: the arm64 image, built as `make image`
// builds it from the cross-compiled static binary, runs under qemu-user
// emulation from its own filesystem as its own user: both profiles
// validate, and the gateway starts with the image's own command and
// becomes healthy.
func TestArm64ImageRunsUnderEmulation(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "this test chroots into the image filesystem and must run as root (as CI does)")
	qemu, err := exec.LookPath("qemu-aarch64-static")
	require.NoError(t, err, "qemu-user-static is required (scripts/ci-deps.sh installs it)")
	bin, err := harness.PlatformBinaryPath("arm64")
	require.NoError(t, err)

	f, err := elf.Open(bin)
	require.NoError(t, err)
	assert.Equal(t, elf.EM_AARCH64, f.Machine, "%s is not an arm64 binary", bin)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s is dynamically linked: it would not start FROM scratch", bin)
	}
	f.Close()

	img := buildFor(t, "linux/arm64", bin)
	cfg := img.Config
	assert.Equal(t, "10001:10001", cfg.User)
	assert.Equal(t, []string{"/tailgate"}, cfg.Entrypoint)
	assert.Equal(t, []string{"--config", "/etc/tailgate/gateway.yaml", harness.GatewayFeatureGates}, cfg.Cmd)
	mountKernelFilesystems(t, img.RootFS)
	// What binfmt_misc's fix-binary flag does for a container of another
	// architecture, by hand: the emulator runs the image's entrypoint, from
	// a path inside the image's root (nothing else of the host is reachable).
	emulator := "/.qemu/qemu-aarch64-static"
	require.NoError(t, os.MkdirAll(filepath.Join(img.RootFS, ".qemu"), 0o755))
	copyFile(t, qemu, filepath.Join(img.RootFS, emulator))
	user, err := cfg.Credential()
	require.NoError(t, err)

	for _, p := range []struct {
		profile string
		set     []string
	}{{"agent", []string{"--set=" + harness.AgentPassthrough}}, {"gateway", nil}} {
		t.Run("validate "+p.profile, func(t *testing.T) {
			cmd := exec.Command(emulator, append([]string{"/tailgate", "validate", "--config", "/etc/tailgate/" + p.profile + ".yaml"}, p.set...)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: img.RootFS, Credential: user}
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=/", "HOME=/"} // the image's own paths and defaults
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "arm64 tailgate validate %s:\n%s", p.profile, out)
		})
	}

	t.Run("gateway starts healthy", func(t *testing.T) {
		ports, err := harness.PickPorts()
		require.NoError(t, err)
		args := slices.Concat(cfg.Entrypoint, cfg.Cmd, harness.ConfigFlags(nil, append(ports.Set("gateway"), harness.BackendsSet("otlp_grpc/backend_disk"))...))
		start := time.Now()
		p, err := harness.StartProcess(emulator, harness.ProcessSpec{
			Name: "image-arm64-gateway", Args: args, Env: ports.Env("gateway"),
			HealthPort: ports.Health, LogDir: t.TempDir(), Root: img.RootFS, RunAs: user,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Stop(30 * time.Second) })
		require.NoError(t, p.WaitHealthy(2*time.Minute))
		t.Logf("REPORT arm64: the emulated gateway was healthy %s after its start", time.Since(start).Round(time.Millisecond))

		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
		require.NoError(t, err)
		assert.Regexp(t, `(?m)^Uid:\s+10001\s+10001\s`, string(status))
		root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", p.Pid()))
		require.NoError(t, err)
		assert.Equal(t, img.RootFS, root)
		// The emulator runs the image's own arm64 binary.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid()))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(cmdline), emulator+"\x00/tailgate\x00"), "cmdline %q", cmdline)
		files, err := os.ReadDir(filepath.Join(img.RootFS, "var", "lib", "tailgate"))
		require.NoError(t, err)
		assert.NotEmpty(t, files, "file_storage wrote nothing to /var/lib/tailgate")
		require.NoError(t, p.Stop(30*time.Second))
	})
}

func hostBinary(t *testing.T) string {
	t.Helper()
	bin, err := harness.BinaryPath()
	require.NoError(t, err)
	return bin
}

// buildFor builds the image of platform from bin as `make image` does,
// exported into a directory removed with the test, and removes it from
// podman's store when the test ends.
func buildFor(t *testing.T, platform, bin string) *Image {
	t.Helper()
	tag := fmt.Sprintf("localhost/tailgate:test-%s-%d", strings.ReplaceAll(platform, "/", "-"), os.Getpid())
	img, err := BuildFor(tag, platform, bin, t.TempDir())
	if img != nil {
		t.Cleanup(img.Remove)
	}
	require.NoError(t, err)
	return img
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o755))
}

// TestImageIndexHoldsEveryPlatform: `make image`'s assembly
// (scripts/build-image-index.sh) makes one manifest list of the amd64 and
// arm64 images, written as an OCI layout: its index names both platforms,
// and each platform's manifest carries the release's annotations and the
// image config of that architecture.
func TestImageIndexHoldsEveryPlatform(t *testing.T) {
	arm64, err := harness.PlatformBinaryPath("arm64")
	require.NoError(t, err)
	tag := fmt.Sprintf("localhost/tailgate:test-index-%d", os.Getpid())
	oci := filepath.Join(t.TempDir(), "oci")
	podman, err := exec.LookPath("podman")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = exec.Command(podman, "manifest", "rm", tag).Run()
		_ = exec.Command(podman, "rmi", "-f", tag+"-amd64", tag+"-arm64").Run()
	})
	run(t, filepath.Join(harness.RepoRoot(), "scripts", "build-image-index.sh"), tag, oci, "amd64="+hostBinary(t), "arm64="+arm64)
	info, err := harness.ReleaseInfo()
	require.NoError(t, err)

	var layout struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(oci, "index.json"), &layout)
	require.Len(t, layout.Manifests, 1)
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	readJSON(t, blob(oci, layout.Manifests[0].Digest), &index)
	platforms := map[string]bool{}
	for _, m := range index.Manifests {
		platform := m.Platform.OS + "/" + m.Platform.Architecture
		platforms[platform] = true
		var manifest struct {
			Config      ociDescriptor     `json:"config"`
			Annotations map[string]string `json:"annotations"`
		}
		readJSON(t, blob(oci, m.Digest), &manifest)
		assert.Equal(t, info["VERSION"], manifest.Annotations["org.opencontainers.image.version"], platform)
		assert.Equal(t, info["OTELCOL_CONTRIB"], manifest.Annotations["dev.tailgate.otelcol.contrib.version"], platform)
		var config struct {
			Architecture string `json:"architecture"`
			Config       struct {
				User string `json:"User"`
			} `json:"config"`
		}
		readJSON(t, blob(oci, manifest.Config.Digest), &config)
		assert.Equal(t, m.Platform.Architecture, config.Architecture)
		assert.Equal(t, "10001:10001", config.Config.User)
	}
	assert.Equal(t, map[string]bool{"linux/amd64": true, "linux/arm64": true}, platforms)
}

type ociDescriptor struct {
	Digest   string `json:"digest"`
	Platform struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

func blob(layout, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(layout, "blobs", algo, hex)
}

func readJSON(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, into), "%s", path)
}
