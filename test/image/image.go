// Package image builds the container image from the repository's Dockerfile
// with podman and exports its filesystem, and does what a container runtime
// does before it runs the entrypoint. The image test (image_test.go) and the
// Kubernetes tests' nodes (test/k8s/cluster) use it.
package image

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// Config is the part of an image's config a runtime uses to start it.
type Config struct {
	User       string            `json:"User"`
	Entrypoint []string          `json:"Entrypoint"`
	Cmd        []string          `json:"Cmd"`
	Labels     map[string]string `json:"Labels"`
}

// Credential is the image's USER ("uid:gid", numeric) as the user and
// group a process runs as.
func (c Config) Credential() (*syscall.Credential, error) {
	u, g, ok := strings.Cut(c.User, ":")
	uid, errU := strconv.ParseUint(u, 10, 32)
	gid, errG := strconv.ParseUint(g, 10, 32)
	if !ok || errU != nil || errG != nil {
		return nil, fmt.Errorf("image USER %q is not numeric uid:gid", c.User)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Image is an image built from the repository's Dockerfile with podman and
// its filesystem exported to a directory.
type Image struct {
	Tag      string
	Platform string // os/arch
	RootFS   string
	Config   Config
	// Annotations are the image manifest's OCI annotations.
	Annotations map[string]string
	podman      string
}

// Build builds the image of the host's platform from the binary under test
// (harness.BinaryPath) as tag, and exports its filesystem into rootfs
// (which must exist; empty: not exported, for a container runtime to run).
func Build(tag, rootfs string) (*Image, error) {
	bin, err := harness.BinaryPath()
	if err != nil {
		return nil, err
	}
	return BuildFor(tag, "linux/"+runtime.GOARCH, bin, rootfs)
}

// BuildFor builds the image for platform (linux/amd64, linux/arm64) from a
// binary built for it, as `make image` does (scripts/build-image.sh), and
// exports its filesystem into rootfs (which must exist).
func BuildFor(tag, platform, binary, rootfs string) (*Image, error) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("podman is required to build the image (scripts/ci-deps.sh installs it): %w", err)
	}
	img := &Image{Tag: tag, Platform: platform, RootFS: rootfs, podman: podman}
	if _, err := output(filepath.Join(harness.RepoRoot(), "scripts", "build-image.sh"), tag, platform, binary); err != nil {
		return nil, err
	}
	return img, img.export()
}

// export reads the image's config and annotations from podman's store and
// exports its filesystem into RootFS.
func (img *Image) export() error {
	podman, tag, platform, rootfs := img.podman, img.Tag, img.Platform, img.RootFS
	out, err := output(podman, "image", "inspect", tag)
	if err != nil {
		return err
	}
	var inspected []struct {
		Os, Architecture string
		Config           Config
		Annotations      map[string]string
	}
	if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 1 {
		return fmt.Errorf("podman image inspect %s: %v\n%s", tag, err, out)
	}
	img.Config, img.Annotations = inspected[0].Config, inspected[0].Annotations
	if got := inspected[0].Os + "/" + inspected[0].Architecture; got != platform {
		return fmt.Errorf("image %s is for %s, not %s", tag, got, platform)
	}
	if rootfs == "" {
		return nil // the caller runs the image in a runtime, not from a directory
	}
	cid, err := output(podman, "create", "--platform", platform, tag)
	if err != nil {
		return err
	}
	defer exec.Command(podman, "rm", "-f", cid).Run()
	scratch, err := os.MkdirTemp("", "tailgate-image-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	tarball := filepath.Join(scratch, "rootfs.tar")
	if _, err := output(podman, "export", "-o", tarball, cid); err != nil {
		return err
	}
	if _, err := output("tar", "-xf", tarball, "-C", rootfs, "--same-owner"); err != nil {
		return err
	}
	return nil
}

// StageContext stages a build context for the Dockerfile, with the binary
// under test, in a new temporary directory of its own (the caller removes
// it): concurrent builds never share one.
func StageContext() (string, error) {
	bin, err := harness.BinaryPath()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "tailgate-image-context-")
	if err != nil {
		return "", err
	}
	stage := exec.Command(filepath.Join(harness.RepoRoot(), "scripts", "stage-image-context.sh"), dir)
	stage.Env = append(os.Environ(), "TAILGATE_BIN="+bin)
	if out, err := stage.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("stage-image-context.sh: %w\n%s", err, out)
	}
	return dir, nil
}

// Remove deletes the image from podman's store.
func (i *Image) Remove() { _ = exec.Command(i.podman, "rmi", "-f", i.Tag).Run() }

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// MountKernelFilesystems does what every container runtime does before it
// starts the entrypoint: mount /proc and /sys (read-only) into a root
// filesystem (memory_limiter reads the cgroup memory limit through them).
// It returns the mount points, to unmount in reverse order, also when it
// fails part way. Callers run in a mount namespace of their own (see
// test/sandbox), so the mounts go with it when the test dies.
func MountKernelFilesystems(root string) ([]string, error) {
	var mounted []string
	for _, m := range []struct {
		dir, fstype string
		flags       uintptr
	}{
		{"proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{"sys", "sysfs", syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
	} {
		target := filepath.Join(root, m.dir)
		if err := os.MkdirAll(target, 0o555); err != nil {
			return mounted, err
		}
		if err := syscall.Mount(m.fstype, target, m.fstype, m.flags, ""); err != nil {
			return mounted, fmt.Errorf("mount %s: %w", target, err)
		}
		mounted = append(mounted, target)
	}
	return mounted, nil
}

// Unmount detaches mount points in reverse order.
func Unmount(points []string) {
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// SaveArchive writes the image to path as a docker-archive tarball, which
// names the image by its tag: the form a node's runtime imports (ctr
// images import) where a registry would be pulled from.
func (i *Image) SaveArchive(path string) error {
	_, err := output(i.podman, "save", "--quiet", "--format", "docker-archive", "-o", path, i.Tag)
	return err
}

// BuildPause builds the pod sandbox ("pause") image as tag, as upstream
// builds it (build/pause in the pinned k8s.io/kubernetes module, whose
// directory is kubeSource): pause.c compiled static, in an image FROM
// scratch that runs it as 65535. Nodes need it and no registry is
// reachable.
func BuildPause(tag, kubeSource string) (*Image, error) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("podman is required to build the pause image: %w", err)
	}
	dir, err := os.MkdirTemp("", "tailgate-pause-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	version := "v" + tag[strings.LastIndex(tag, ":")+1:]
	// Upstream's CFLAGS (build/pause/Makefile).
	if _, err := output("gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION="+version,
		"-o", filepath.Join(dir, "pause"), filepath.Join(kubeSource, "build", "pause", "linux", "pause.c")); err != nil {
		return nil, err
	}
	containerfile := "FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT [\"/pause\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return nil, err
	}
	if _, err := output(podman, "build", "--quiet", "-t", tag, "-f", filepath.Join(dir, "Containerfile"), dir); err != nil {
		return nil, err
	}
	return &Image{Tag: tag, Platform: "linux/" + runtime.GOARCH, podman: podman}, nil
}
