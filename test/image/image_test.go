package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/sandbox"
)

// TestMain runs the tests in a mount namespace of their own: the /proc and
// /sys mounted into the image's filesystem go with it, also when the test
// binary is killed.
func TestMain(m *testing.M) { os.Exit(sandbox.Main(sandbox.Mount, m.Run)) }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = harness.RepoRoot()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// TestImageRunsFromItsOwnFilesystemAsItsUser: the image is built with
// podman, its filesystem exported, and the image's own entrypoint and
// command run from that filesystem as the image's user.
func TestImageRunsFromItsOwnFilesystemAsItsUser(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "this test chroots into the image filesystem and must run as root (as CI does)")

	rootfs := t.TempDir()
	img, err := Build(fmt.Sprintf("localhost/tailgate:test-%d", os.Getpid()), rootfs)
	if img != nil {
		t.Cleanup(img.Remove)
	}
	require.NoError(t, err)
	cfg := img.Config
	assert.Equal(t, "10001:10001", cfg.User)
	assert.Equal(t, []string{"/tailgate"}, cfg.Entrypoint)
	assert.Equal(t, []string{"--config", "/etc/tailgate/gateway.yaml", harness.GatewayFeatureGates}, cfg.Cmd)

	entries := listFiles(t, rootfs)
	mountKernelFilesystems(t, rootfs)
	for _, want := range []string{"tailgate", "etc/tailgate/agent.yaml", "etc/tailgate/gateway.yaml", "etc/ssl/certs/ca-certificates.crt", "var/lib/tailgate"} {
		assert.Contains(t, entries, want)
	}
	// The profiles in the image are the ones in configs/, byte for byte.
	for _, p := range []string{"agent", "gateway"} {
		want, err := os.ReadFile(harness.ProfilePath(p))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(rootfs, "etc", "tailgate", p+".yaml"))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "image /etc/tailgate/%s.yaml", p)
	}

	uid, _, _ := strings.Cut(cfg.User, ":")
	user, err := cfg.Credential()
	require.NoError(t, err)
	cases := []struct {
		name string
		args []string // as `docker run IMAGE args...` would pass them
		set  []string // more --set flags, after the ports'
	}{
		// The default command: the gateway profile, here with its disk queue
		// (the option that writes to the image's state directory).
		{name: "gateway", args: nil, set: []string{harness.BackendsSet("otlp_grpc/backend_disk")}},
		// No Kubernetes API here, so the agent's k8s_attributes runs in passthrough.
		{name: "agent", args: []string{"--config", "/etc/tailgate/agent.yaml"}, set: []string{harness.AgentPassthrough}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if args == nil {
				args = cfg.Cmd
			}
			ports, err := harness.PickPorts()
			require.NoError(t, err)
			args = slices.Concat(cfg.Entrypoint[1:], args, harness.ConfigFlags(nil, append(ports.Set(c.name), c.set...)...))
			p, err := harness.StartProcess(cfg.Entrypoint[0], harness.ProcessSpec{
				Name: "image-" + c.name, Args: args, Env: ports.Env(c.name),
				HealthPort: ports.Health, LogDir: t.TempDir(), Root: rootfs, RunAs: user,
			})
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Stop(30 * time.Second) })
			require.NoError(t, p.WaitHealthy(30*time.Second))

			// The process runs as the image's user, from the image's filesystem.
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
			require.NoError(t, err)
			assert.Regexp(t, `(?m)^Uid:\s+`+uid+`\s+`+uid+`\s`, string(status))
			root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", p.Pid()))
			require.NoError(t, err)
			assert.Equal(t, rootfs, root)
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid()))
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(rootfs, "tailgate"), exe)

			if c.name == "gateway" {
				// The disk queue lives in the image's writable state directory.
				files, err := os.ReadDir(filepath.Join(rootfs, "var", "lib", "tailgate"))
				require.NoError(t, err)
				assert.NotEmpty(t, files, "file_storage wrote nothing to /var/lib/tailgate")
			}
			require.NoError(t, p.Stop(30*time.Second))
		})
	}

	// Where a Docker daemon answers, run the same image with docker too.
	if docker, err := exec.LookPath("docker"); err == nil && exec.Command(docker, "info").Run() == nil {
		t.Run("docker", func(t *testing.T) { dockerRun(t, docker) })
	} else {
		t.Log("no Docker daemon answers here: docker run not exercised")
	}
}

// dockerRun builds the same Dockerfile with Docker and runs the image with
// its own entrypoint, user and default command.
func dockerRun(t *testing.T, docker string) {
	tag := fmt.Sprintf("tailgate:docker-test-%d", os.Getpid())
	context, err := StageContext()
	require.NoError(t, err)
	defer os.RemoveAll(context)
	run(t, docker, "build", "-q", "-f", filepath.Join(context, "Dockerfile"), "-t", tag, context)
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", tag).Run() })
	port, err := harness.FreePort()
	require.NoError(t, err)
	name := fmt.Sprintf("tailgate-test-%d", os.Getpid())
	// A lone gateway bound to 0.0.0.0 has no ring to guard: the guard would
	// refuse 0.0.0.0 as its own address.
	run(t, docker, "run", "-d", "--name", name, "-e", "MY_POD_IP=0.0.0.0", "-p", fmt.Sprintf("127.0.0.1:%d:13133", port), tag,
		"--config", "/etc/tailgate/gateway.yaml", harness.GatewayFeatureGates, "--set="+harness.GuardSet("dns", false))
	t.Cleanup(func() { _ = exec.Command(docker, "rm", "-f", name).Run() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := exec.Command("curl", "-sf", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput(); err == nil {
			t.Logf("docker run: health %s", out)
			assert.Equal(t, "10001:10001", run(t, docker, "inspect", "--format", "{{.Config.User}}", name))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("docker-run container never became healthy:\n%s", run(t, docker, "logs", name))
}

// mountKernelFilesystems mounts /proc and /sys into the image's root, as a
// container runtime would, until the test ends.
func mountKernelFilesystems(t *testing.T, rootfs string) {
	points, err := MountKernelFilesystems(rootfs)
	t.Cleanup(func() { Unmount(points) })
	require.NoError(t, err)
}

func listFiles(t *testing.T, root string) []string {
	var out []string
	require.NoError(t, filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, rel)
		return nil
	}))
	return out
}
