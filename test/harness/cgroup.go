package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits are a container's resource limits, applied to a process through
// a cgroup of its own, as the container runtime applies a pod's limits: the
// collector's memory_limiter reads the memory limit from there, and the Go
// runtime derives GOMAXPROCS from the CPU limit.
type Limits struct {
	MemoryBytes int64   // memory.limit_in_bytes / memory.max; 0: none
	CPUs        float64 // CFS quota in CPUs; 0: none
}

// cgroup is a set of per-controller cgroup directories holding one process.
type cgroup struct{ dirs []string }

const cgroupRoot = "/sys/fs/cgroup"

// newCgroup creates the cgroup directories for limits under this process's
// own cgroups (so it nests wherever the test runs) and returns the shell
// command that moves a process into them (written before it execs, so the
// process starts inside its limits).
func newCgroup(name string, limits Limits) (*cgroup, string, error) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return newCgroupV2(name, limits)
	}
	own, err := OwnCgroupsV1()
	if err != nil {
		return nil, "", err
	}
	cg := &cgroup{}
	var moves []string
	add := func(controller string, files map[string]string) error {
		parent, ok := own[controller]
		if !ok {
			return fmt.Errorf("cgroup v1 controller %s not mounted", controller)
		}
		dir := filepath.Join(cgroupRoot, controller, parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		cg.dirs = append(cg.dirs, dir)
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
				return fmt.Errorf("%s/%s: %w", dir, f, err)
			}
		}
		moves = append(moves, "echo $$ > "+shellQuote(filepath.Join(dir, "cgroup.procs")))
		return nil
	}
	if limits.MemoryBytes > 0 {
		if err := add("memory", map[string]string{"memory.limit_in_bytes": strconv.FormatInt(limits.MemoryBytes, 10)}); err != nil {
			cg.remove()
			return nil, "", err
		}
	}
	if limits.CPUs > 0 {
		if err := add("cpu", map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": strconv.Itoa(int(limits.CPUs * 100000))}); err != nil {
			cg.remove()
			return nil, "", err
		}
	}
	return cg, strings.Join(moves, " && "), nil
}

func newCgroupV2(name string, limits Limits) (*cgroup, string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, "", err
	}
	parent := strings.TrimPrefix(strings.TrimSpace(string(data)), "0::")
	// A process cannot sit in an inner node with controllers enabled: put
	// the child beside this process, under its parent.
	dir := filepath.Join(cgroupRoot, filepath.Dir(parent), name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, "", err
	}
	cg := &cgroup{dirs: []string{dir}}
	if limits.MemoryBytes > 0 {
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(limits.MemoryBytes, 10)), 0o644); err != nil {
			cg.remove()
			return nil, "", err
		}
	}
	if limits.CPUs > 0 {
		if err := os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d 100000", int(limits.CPUs*100000)), 0o644); err != nil {
			cg.remove()
			return nil, "", err
		}
	}
	return cg, "echo $$ > " + shellQuote(filepath.Join(dir, "cgroup.procs")), nil
}

// shellQuote quotes s as one word of sh: a process's name, part of its
// cgroup's path, may hold spaces ("tailgate gateway").
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// OwnCgroupsV1 maps each v1 controller to this process's cgroup path
// (the Kubernetes tests' real nodes nest their cgroupRoot under it).
func OwnCgroupsV1() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	own := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own, sc.Err()
}

// OOMKills is how many times the memory limit killed a process of the
// cgroup (cgroup v1: memory.oom_control; v2: memory.events).
func (cg *cgroup) OOMKills() int {
	for _, dir := range cg.dirs {
		for _, f := range []string{"memory.oom_control", "memory.events"} {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
					n, _ := strconv.Atoi(strings.TrimSpace(v))
					return n
				}
			}
		}
	}
	return 0
}

// remove deletes the (empty) cgroup directories.
func (cg *cgroup) remove() {
	for _, dir := range cg.dirs {
		_ = os.Remove(dir)
	}
}
