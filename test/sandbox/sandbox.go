// Package sandbox runs a test binary again inside Linux namespaces of its
// own, so that whatever its tests mount (and, with a network namespace,
// bind) is gone with it: a namespace ends with its last process, and every
// process a test starts dies with the test binary (parent-death signal, see
// harness.StartProcess). That holds when the test binary is killed too,
// kill -9 included, where no cleanup code runs.
package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// insideEnv marks the re-executed test binary.
const insideEnv = "TAILGATE_TEST_SANDBOX"

// Namespaces a sandbox can have.
const (
	Mount   = syscall.CLONE_NEWNS  // private mounts (propagation private: nothing leaks to the host)
	Network = syscall.CLONE_NEWNET // a network of its own, with only a loopback device
)

// Inside reports whether this process is the re-executed test binary.
func Inside() bool { return os.Getenv(insideEnv) != "" }

// Main is a TestMain body: outside the sandbox it runs this test binary
// again, with the same arguments, in new namespaces (a combination of Mount
// and Network), and returns its exit code; inside, it returns run's. Needs
// root, as CI has.
func Main(namespaces uintptr, run func() int) int {
	if Inside() {
		return run()
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "sandbox: these tests need root (Linux namespaces, mounts, chroot), as CI has")
		return 1
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The runtime unshares between fork and exec and, for a mount
	// namespace, makes every mount private first. The parent-death signal
	// ends the sandboxed binary when this one dies, however it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: namespaces, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		return 1
	}
	return 0
}
