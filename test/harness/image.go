package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ImageConfig is the part of an image's config a runtime uses to start it.
type ImageConfig struct {
	User       string   `json:"User"`
	Entrypoint []string `json:"Entrypoint"`
	Cmd        []string `json:"Cmd"`
}

// Image is an image built from the repository's Dockerfile with podman and
// its filesystem exported to a directory.
type Image struct {
	Tag    string
	RootFS string
	Config ImageConfig
	podman string
}

// BuildImage stages the build context, builds the Dockerfile with podman as
// tag, and exports the image's filesystem into rootfs (which must exist).
func BuildImage(tag, rootfs string) (*Image, error) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return nil, fmt.Errorf("podman is required to build the image (scripts/ci-deps.sh installs it): %w", err)
	}
	if _, err := BinaryPath(); err != nil {
		return nil, err
	}
	img := &Image{Tag: tag, RootFS: rootfs, podman: podman}
	if _, err := runIn(RepoRoot(), filepath.Join(RepoRoot(), "scripts", "stage-image-context.sh")); err != nil {
		return nil, err
	}
	if _, err := runIn(RepoRoot(), podman, "build", "-q", "-f", "Dockerfile", "-t", tag, "."); err != nil {
		return nil, err
	}
	out, err := runIn("", podman, "image", "inspect", "--format", "{{json .Config}}", tag)
	if err != nil {
		return img, err
	}
	if err := json.Unmarshal([]byte(out), &img.Config); err != nil {
		return img, err
	}
	cid, err := runIn("", podman, "create", tag)
	if err != nil {
		return img, err
	}
	defer exec.Command(podman, "rm", "-f", cid).Run()
	tarball := filepath.Join(rootfs, "..", filepath.Base(rootfs)+".tar")
	defer os.Remove(tarball)
	if _, err := runIn("", podman, "export", "-o", tarball, cid); err != nil {
		return img, err
	}
	if _, err := runIn("", "tar", "-xf", tarball, "-C", rootfs, "--same-owner"); err != nil {
		return img, err
	}
	return img, nil
}

// Remove deletes the image from podman's store.
func (i *Image) Remove() { _ = exec.Command(i.podman, "rmi", "-f", i.Tag).Run() }

func runIn(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// MountKernelFilesystems does what every container runtime does before it
// starts the entrypoint: mount /proc and /sys (read-only) into a root
// filesystem (memory_limiter reads the cgroup memory limit through them).
// It returns the mount points, to unmount in reverse order, also when it
// fails part way.
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
