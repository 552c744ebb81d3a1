package cluster

// Images: the one the kubelet was started with, and those it pulls from the
// registries a test lets it pull from, as a node's container runtime pulls
// a pod's image by its reference (tag or digest).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tailgate-dev/tailgate/test/image"
)

// containerImage is an image's exported filesystem and its entrypoint.
type containerImage struct {
	rootfs string
	entry  []string
}

// PullFrom lets the kubelet pull images from registry (host:port): a pod
// whose image names that registry runs that image's entrypoint from its
// filesystem, pulled once per reference. Pods of images elsewhere stay
// placeholders.
func (k *Kubelet) PullFrom(registry string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.registries[registry] = true
}

// imageFor is the image a pod's container runs: the kubelet's own, or one
// pulled from a registry it may pull from; ok is false for a placeholder.
func (k *Kubelet) imageFor(ref string) (img containerImage, ok bool, err error) {
	if ref == k.image {
		return containerImage{k.rootfs, k.entry}, true, nil
	}
	host, _, _ := strings.Cut(ref, "/")
	k.mu.Lock()
	allowed := k.registries[host]
	k.mu.Unlock()
	if !allowed {
		return containerImage{}, false, nil
	}
	// One pull at a time: the pods of a rollout share the first one's.
	k.pullMu.Lock()
	defer k.pullMu.Unlock()
	if img, ok := k.pulled[ref]; ok {
		return img, true, nil
	}
	images := filepath.Join(k.dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return containerImage{}, true, err
	}
	// A directory of its own per pull: a failed pull leaves its part behind.
	rootfs, err := os.MkdirTemp(images, "rootfs-")
	if err != nil {
		return containerImage{}, true, err
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return containerImage{}, true, err
	}
	pulled, err := image.Pull(ref, rootfs)
	if err != nil {
		return containerImage{}, true, fmt.Errorf("pulling %s: %w", ref, err)
	}
	img = containerImage{rootfs, pulled.Config.Entrypoint}
	k.pulled[ref] = img
	return img, true, nil
}

// removePulled removes what the kubelet pulled from podman's store.
func (k *Kubelet) removePulled() {
	k.pullMu.Lock()
	defer k.pullMu.Unlock()
	for ref := range k.pulled {
		_ = exec.Command("podman", "rmi", "-f", ref).Run()
	}
}
