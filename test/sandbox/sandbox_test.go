package sandbox_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/sandbox"
)

// childEnv names the file where the child test binary reports what it holds.
const childEnv = "TAILGATE_SANDBOX_TEST_REPORT"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(sandbox.Main(sandbox.Mount, m.Run))
	}
	os.Exit(m.Run())
}

// held is what the child test binary started and mounted.
type held struct {
	Pid     int    // a process started the way the image test and the kubelet start theirs
	MountNS string // the child's mount namespace, holding Mount
	Mount   string
}

// TestNothingOutlivesAKilledTestBinary runs this test binary as a child
// that, like the image test and the Kubernetes tests, enters a sandbox,
// mounts a filesystem and starts a process chrooted and as another user;
// then kills the child with SIGKILL, so no cleanup code runs. The process
// must die and no process may be left in the mount namespace (which, with
// its mounts, ends with its last process).
func TestNothingOutlivesAKilledTestBinary(t *testing.T) {
	if report := os.Getenv(childEnv); report != "" {
		holdAndWait(t, report)
		return
	}
	require.Equal(t, 0, os.Geteuid(), "this test makes namespaces and mounts and must run as root (as CI does)")
	report := filepath.Join(t.TempDir(), "report.json")
	child := exec.Command(os.Args[0], "-test.run=^TestNothingOutlivesAKilledTestBinary$", "-test.count=1", "-test.v")
	// The child's temporary directories go under this test's: killed, it
	// cannot remove them itself.
	childTmp := t.TempDir()
	child.Env = append(os.Environ(), childEnv+"="+report, "TMPDIR="+childTmp)
	out, err := os.Create(filepath.Join(t.TempDir(), "child.log"))
	require.NoError(t, err)
	defer out.Close()
	child.Stdout, child.Stderr = out, out
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	var h held
	waitFor(t, time.Minute, "the child's report", func() bool {
		data, err := os.ReadFile(report)
		return err == nil && json.Unmarshal(data, &h) == nil
	}, out.Name())
	require.True(t, alive(h.Pid), "the child's process is not running")
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", h.Pid))
	require.NoError(t, err)
	require.Contains(t, string(mounts), " "+h.Mount+" ", "the child's mount is not in its namespace")
	require.NotEqual(t, namespaceOf(os.Getpid()), h.MountNS, "the child did not enter a mount namespace of its own")

	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	waitFor(t, 30*time.Second, "the child's process and mount namespace gone", func() bool {
		return !alive(h.Pid) && len(processesIn(h.MountNS)) == 0
	}, out.Name())
	left, err := os.ReadDir(childTmp)
	require.NoError(t, err)
	assert.NotEmpty(t, left, "the killed child's temporary directories are not under this test's, which removes them")
}

// holdAndWait is the child's side: inside its sandbox it mounts a tmpfs,
// starts a process chrooted as nobody, reports both, and waits to be killed.
func holdAndWait(t *testing.T, report string) {
	require.True(t, sandbox.Inside())
	dir := t.TempDir()
	require.NoError(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	p, err := harness.StartProcess(sleep, harness.ProcessSpec{
		Name: "held", Args: []string{"120"}, LogDir: t.TempDir(),
		Root: "/", RunAs: &syscall.Credential{Uid: 65534, Gid: 65534},
	})
	require.NoError(t, err)
	data, err := json.Marshal(held{Pid: p.Pid(), MountNS: namespaceOf(os.Getpid()), Mount: dir})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(report+".tmp", data, 0o644))
	require.NoError(t, os.Rename(report+".tmp", report))
	time.Sleep(2 * time.Minute) // bounded: the parent kills this binary long before
	t.Fatal("the parent test never killed this child")
}

func namespaceOf(pid int) string {
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return ns
}

// alive reports whether pid runs (a zombie has released everything it held).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// processesIn lists the live processes in a mount namespace.
func processesIn(ns string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if namespaceOf(pid) == ns && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, childLog string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(childLog)
			t.Fatalf("%s: not after %s; child output:\n%s", what, timeout, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
