package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessSpec describes one tailgate process.
type ProcessSpec struct {
	// Name identifies the process in logs and summaries, e.g. "gateway-1".
	Name string
	// Args are the binary's arguments, e.g. --config configs/gateway.yaml.
	Args []string
	// Env is added to a minimal environment (Environ), so that the
	// profiles' defaults apply unless a test overrides them on purpose.
	Env map[string]string
	// HealthHost is the host health_check listens on (default 127.0.0.1).
	HealthHost string
	// HealthPort is the health_check extension's port.
	HealthPort int
	// HealthPath is the path polled on HealthPort (default "/").
	HealthPath string
	// HealthPoll is how often WaitHealthy asks (default 50ms); a startup
	// measurement asks often enough not to round it up.
	HealthPoll time.Duration
	// LogDir receives <Name>.log with the process's stdout and stderr.
	LogDir string
	// Root, when set, is the directory the process runs chrooted in (the
	// binary's path is then inside it), as a container runtime would.
	Root string
	// RunAs, when set, is the user and group the process runs as.
	RunAs *syscall.Credential
	// Limits, when set, are the process's memory and CPU limits, as a pod's
	// (see Limits). Not with Root.
	Limits *Limits
}

// Process is a running tailgate binary.
type Process struct {
	Spec    ProcessSpec
	LogPath string

	cmd    *exec.Cmd
	cgroup *cgroup
	// exitOOMKills is read from the cgroup when the process has exited,
	// before the cgroup is removed.
	exitOOMKills int
	done         chan struct{}
	waitErr      error
	stopOnce     sync.Once
}

// StartProcess starts the binary and returns once it has been launched; call
// WaitHealthy to wait for it to serve.
func StartProcess(bin string, spec ProcessSpec) (*Process, error) {
	if err := os.MkdirAll(spec.LogDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(spec.LogDir, spec.Name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, spec.Args...)
	var cg *cgroup
	if spec.Limits != nil {
		if spec.Root != "" {
			logFile.Close()
			return nil, fmt.Errorf("start %s: Limits and Root together are not supported", spec.Name)
		}
		var move string
		cg, move, err = newCgroup(fmt.Sprintf("tailgate-test-%d-%s", os.Getpid(), spec.Name), *spec.Limits)
		if err != nil {
			logFile.Close()
			return nil, fmt.Errorf("start %s: limits: %w", spec.Name, err)
		}
		// The shell joins the cgroup, then becomes the binary: the process
		// starts inside its limits, as in a container.
		cmd = exec.Command("/bin/sh", append([]string{"-c", move + ` && exec "$0" "$@"`, bin}, spec.Args...)...)
	}
	cmd.Env = Environ(spec.Env)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The kernel kills the process if the harness dies, so none outlives a
	// crashed or killed test. chroot and the user change are made here, by
	// the runtime between fork and exec, and not by chroot(8): a credential
	// change clears the parent-death signal, and Go sets it after the change
	// while `chroot --userspec` would lose it.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL, Setpgid: true,
		Chroot: spec.Root, Credential: spec.RunAs,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		if cg != nil {
			cg.remove()
		}
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{Spec: spec, LogPath: logPath, cmd: cmd, cgroup: cg, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		if cg != nil {
			p.exitOOMKills = cg.OOMKills()
			cg.remove()
		}
		close(p.done)
	}()
	return p, nil
}

// Environ is PATH and HOME and extra: the environment tailgate processes
// run with, so that nothing leaks in from the developer's shell.
func Environ(extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// OOMKills is how many times the process's memory limit killed it (0
// without Limits).
func (p *Process) OOMKills() int {
	if p.cgroup == nil {
		return 0
	}
	if p.Exited() {
		return p.exitOOMKills
	}
	return p.cgroup.OOMKills()
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitHealthy polls the health_check endpoint until it answers 200, the
// process exits, or the timeout passes.
func (p *Process) WaitHealthy(timeout time.Duration) error {
	path := p.Spec.HealthPath
	if path == "" {
		path = "/"
	}
	host := p.Spec.HealthHost
	if host == "" {
		host = "127.0.0.1"
	}
	url := fmt.Sprintf("http://%s%s", net.JoinHostPort(host, strconv.Itoa(p.Spec.HealthPort)), path)
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited before it was healthy (%v); log:\n%s", p.Spec.Name, p.waitErr, p.LogTail(40))
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		poll := p.Spec.HealthPoll
		if poll == 0 {
			poll = 50 * time.Millisecond
		}
		time.Sleep(poll)
	}
	return fmt.Errorf("%s not healthy after %s; log:\n%s", p.Spec.Name, timeout, p.LogTail(40))
}

// Stop sends SIGTERM and waits up to grace for a clean shutdown (collectors
// flush their pipelines on SIGTERM), then kills the process. It is safe to
// call more than once.
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.stopOnce.Do(func() {
		if p.Exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			err = fmt.Errorf("%s did not stop within %s and was killed", p.Spec.Name, grace)
		}
	})
	return err
}

// Kill ends the process at once with SIGKILL, as a crash or an OOM kill would.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
}

// Wait blocks until the process has exited or ctx ends.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		var exitErr *exec.ExitError
		if errors.As(p.waitErr, &exitErr) {
			return exitErr
		}
		return p.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LogTail returns the last n lines of the process log.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ProcStats are a process's CPU time and memory high-water mark from /proc.
type ProcStats struct {
	CPU    time.Duration // user + system
	System time.Duration // system alone: the kernel's work for the process (page faults, syscalls)
	// MinorFaults counts pages the process touched for the first time since
	// the kernel mapped them (minflt): a heap that grows, or that the Go
	// runtime returns to the kernel and takes back, faults once per page.
	MinorFaults int64
	PeakRSS     int64 // VmHWM, bytes
	RSS         int64 // VmRSS, bytes
}

// Stats reads /proc/<pid>/stat and /proc/<pid>/status.
func (p *Process) Stats() (ProcStats, error) {
	var st ProcStats
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return st, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	var utime, stime int64
	fmt.Sscan(fields[7], &st.MinorFaults)
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	const clockTicks = 100 // USER_HZ on Linux
	st.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	st.System = time.Duration(stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			st.PeakRSS = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			st.RSS = kb << 10
		}
	}
	return st, nil
}
