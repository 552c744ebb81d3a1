package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// nodeCgroupParent is where the nodes' cgroups go: the same path in every
// cgroup hierarchy, because the kubelet is given one cgroupRoot for all.
type nodeCgroupParent struct {
	path        string   // under each hierarchy's mount
	hierarchies []string // the mounts (cgroup v1: one per controller)
	made        []string // directories created on the way to path
	// own is this process's cgroup in each v1 hierarchy, by its mount's
	// name: the directories below it are the test's to weigh.
	own map[string]string
}

// nodeCgroups is a node's cgroupRoot: the kubelet puts its QoS and pod
// cgroups, and runc its containers', under it, in every hierarchy.
type nodeCgroups struct {
	Root  string   // the path the kubelet is given
	roots []string // Root in each hierarchy
}

const cgroupFS = "/sys/fs/cgroup"

// nodeCgroupPrefix names the nodes' cgroups with the test binary's PID, so
// that a later run can tell and remove those of a run that was killed.
const nodeCgroupPrefix = "tailgate-node-"

// newNodeCgroupParent finds where the nodes' cgroups go: under this
// process's own cgroup (on cgroup v1, its memory cgroup, the one that
// bounds the test), at that path in every hierarchy, creating the path
// where a hierarchy lacks it. It removes what a killed earlier run left.
func newNodeCgroupParent() (*nodeCgroupParent, error) {
	if _, err := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers")); err == nil {
		data, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, err
		}
		// A process cannot sit in an inner node with controllers enabled:
		// the nodes go beside this process, under its parent.
		p := &nodeCgroupParent{path: filepath.Dir(strings.TrimPrefix(strings.TrimSpace(string(data)), "0::")), hierarchies: []string{cgroupFS}}
		p.removeStale()
		return p, nil
	}
	own, err := harness.OwnCgroupsV1()
	if err != nil {
		return nil, err
	}
	path, ok := own["memory"]
	if !ok {
		return nil, errors.New("the cgroup v1 memory controller is not mounted")
	}
	p := &nodeCgroupParent{path: path, own: own}
	// Every hierarchy, not only the ones the kubelet requires: runc puts a
	// container in each mounted one (blkio, devices, freezer...).
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() { // the co-mounted names (cpu,cpuacct) are symlinks
			p.hierarchies = append(p.hierarchies, filepath.Join(cgroupFS, e.Name()))
		}
	}
	p.removeStale()
	for _, h := range p.hierarchies {
		if _, err := p.mkdirAll(h, path); err != nil {
			p.remove()
			return nil, err
		}
	}
	return p, nil
}

// newNodeCgroups creates a node's cgroupRoot in every hierarchy, weighted
// for CPU as its share of the machine (see cpuWeights).
func (p *nodeCgroupParent) newNodeCgroups(node string) (*nodeCgroups, error) {
	cg := &nodeCgroups{Root: filepath.Join(p.path, nodeCgroupPrefix+strconv.Itoa(os.Getpid())+"-"+node)}
	for _, h := range p.hierarchies {
		dir, err := p.mkdirAll(h, cg.Root)
		if err != nil {
			cg.remove()
			return nil, err
		}
		cg.roots = append(cg.roots, dir)
		if err := setCPUWeight(dir, nodeCPUShares); err != nil {
			cg.remove()
			return nil, err
		}
	}
	return cg, nil
}

// The nodes share this machine with the test's other processes, each of
// which weighs 1024 CPU shares. A node's pods all sit under its cgroupRoot,
// so that root weighs what the node's CPUs would (1024 a CPU, as the
// kubelet weighs its kubepods cgroup), and the directories this test makes
// above the roots weigh the most there is, so that they never cap the
// nodes below them. Left at the default (1024 for everything above the
// roots), every pod of every node together weighed one process, and under
// make test's load the agents answered too slowly for their senders.
var nodeCPUShares = 1024 * runtime.NumCPU()

const maxCPUShares = 262144

// setCPUWeight sets a cgroup's CPU weight in shares (cgroup v1 cpu.shares;
// v2 cpu.weight, converted as the kubelet converts); a hierarchy without
// either file is not the CPU controller's, and is left alone.
func setCPUWeight(dir string, shares int) error {
	if _, err := os.Stat(filepath.Join(dir, "cpu.shares")); err == nil {
		return os.WriteFile(filepath.Join(dir, "cpu.shares"), []byte(strconv.Itoa(shares)), 0o644)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu.weight")); err == nil {
		weight := 1 + ((shares-2)*9999)/262142
		return os.WriteFile(filepath.Join(dir, "cpu.weight"), []byte(strconv.Itoa(weight)), 0o644)
	}
	return nil
}

// mkdirAll creates path under a hierarchy's mount, level by level, noting
// the directories above the nodes' roots it creates. A new cpuset starts
// with no CPUs and no memory nodes: it takes its parent's, as the kernel's
// clone_children would.
func (p *nodeCgroupParent) mkdirAll(mount, path string) (string, error) {
	dir := mount
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, part)
		err := os.Mkdir(dir, 0o755)
		switch {
		case errors.Is(err, os.ErrExist):
		case err != nil:
			return "", err
		default:
			if !strings.HasPrefix(part, nodeCgroupPrefix) {
				p.made = append(p.made, dir)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return "", fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
					}
				}
			}
		}
		// The directories above the nodes' roots and below this process's
		// own cgroup are the test's: they never cap the nodes (a node's
		// root is weighed by newNodeCgroups).
		own, ok := p.own[filepath.Base(mount)]
		if ok && !strings.HasPrefix(part, nodeCgroupPrefix) && strings.HasPrefix(dir, filepath.Join(mount, own)+"/") {
			if err := setCPUWeight(dir, maxCPUShares); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

// remove deletes the directories made on the way to the nodes' cgroups,
// once every node's are gone.
func (p *nodeCgroupParent) remove() {
	for i := len(p.made) - 1; i >= 0; i-- {
		_ = os.Remove(p.made[i])
	}
}

// removeStale removes the node cgroups a killed earlier run left (no
// cleanup code runs on SIGKILL, and a cgroup outlives its processes):
// those named for a PID that no longer runs.
func (p *nodeCgroupParent) removeStale() {
	for _, h := range p.hierarchies {
		entries, _ := os.ReadDir(filepath.Join(h, p.path))
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), nodeCgroupPrefix)
			if !ok {
				continue
			}
			pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
			if err != nil || processRuns(pid) {
				continue
			}
			removeTrees([]string{filepath.Join(h, p.path, e.Name())})
		}
	}
}

// remove deletes the node's cgroups: those the kubelet and runc made under
// the roots, deepest first, then the roots. A cgroup with a process left
// cannot be removed and stays: Node.Stop waits for the node's processes
// first.
func (cg *nodeCgroups) remove() { removeTrees(cg.roots) }

// removeTrees removes the cgroup directories under and at each top,
// deepest first (rmdir is how a cgroup is removed; its files go with it).
func removeTrees(tops []string) {
	var all []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
	}
	sort.Slice(all, func(i, j int) bool { return strings.Count(all[i], "/") > strings.Count(all[j], "/") })
	for _, dir := range all {
		_ = os.Remove(dir)
	}
}

func processRuns(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// RemoveLeftNodeCgroups removes the node cgroups of test processes that no
// longer run. The live suite's outer process calls it once its sandboxed
// child has ended, however it ended: a child killed with SIGKILL runs no
// cleanup, and its nodes' cgroups would stay until the next run.
func RemoveLeftNodeCgroups() {
	if p, err := newNodeCgroupParent(); err == nil {
		p.remove()
	}
}
