package cluster

// The container's root filesystem: an overlay over the image, the pod's
// volumes, the service account token, /proc and /sys.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tailgate-dev/tailgate/test/image"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// prepareRoot builds the container's root: an overlay over the image's
// filesystem (rootfs) with the pod's volumes, service account token, /proc
// and /sys.
func (k *Kubelet) prepareRoot(pod *corev1.Pod, run *podRun, rootfs string) (string, error) {
	ctx := context.Background()
	base := filepath.Join(k.dir, "pods", string(pod.UID))
	upper, work, root, vols := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "root"), filepath.Join(base, "volumes")
	for _, d := range []string{upper, work, root, vols} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := syscall.Mount("overlay", root, "overlay", 0, "lowerdir="+rootfs+",upperdir="+upper+",workdir="+work); err != nil {
		return "", fmt.Errorf("overlay: %w", err)
	}
	run.mounts = append(run.mounts, root)
	k.mu.Lock()
	nodeDNS := k.nodeDNS
	k.mu.Unlock()
	if nodeDNS {
		// As a kubelet with --cluster-dns writes it for dnsPolicy
		// ClusterFirst; the pod's node runs the cache (UseNodeDNS).
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(root, "etc", "resolv.conf"), []byte("nameserver "+k.nodeIP(pod.Spec.NodeName)+"\n"), 0o644); err != nil {
			return "", err
		}
	}

	var fsGroup int64 = -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		fsGroup = *sc.FSGroup
	}
	sources := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(vols, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		switch {
		case v.ConfigMap != nil:
			if err := k.writeConfigMap(ctx, pod.Namespace, v.ConfigMap.Name, dir); err != nil {
				return "", err
			}
		case v.Secret != nil:
			if err := k.writeSecret(ctx, pod.Namespace, v.Secret, fsGroup, dir); err != nil {
				return "", err
			}
		case v.EmptyDir != nil:
			if fsGroup >= 0 {
				if err := os.Chown(dir, -1, int(fsGroup)); err != nil {
					return "", err
				}
				if err := os.Chmod(dir, 0o2775); err != nil {
					return "", err
				}
			}
		case v.Projected != nil && projectsToken(v.Projected):
			// The ServiceAccount admission plugin's kube-api-access volume.
			if _, err := k.serviceAccountFiles(pod, dir); err != nil {
				return "", err
			}
		case v.Projected != nil && projectsConfigMapsOnly(v.Projected):
			// Several ConfigMaps in one directory (the gateway's profile and
			// its policies file).
			for _, src := range v.Projected.Sources {
				if err := k.writeConfigMap(ctx, pod.Namespace, src.ConfigMap.Name, dir); err != nil {
					return "", err
				}
			}
		default:
			return "", fmt.Errorf("volume %s: only configMap, secret, emptyDir, a projection of ConfigMaps and the service account projection are supported", v.Name)
		}
		sources[v.Name] = dir
	}
	c := pod.Spec.Containers[0]
	type bind struct {
		src, target string
		ro          bool
	}
	var binds []bind
	for _, m := range c.VolumeMounts {
		binds = append(binds, bind{sources[m.Name], m.MountPath, m.ReadOnly})
	}
	for _, b := range binds {
		target := filepath.Join(root, b.target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return "", err
		}
		if err := syscall.Mount(b.src, target, "", syscall.MS_BIND, ""); err != nil {
			return "", fmt.Errorf("bind %s: %w", b.target, err)
		}
		run.mounts = append(run.mounts, target)
		if b.ro {
			if err := syscall.Mount("", target, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
				return "", err
			}
		}
	}
	points, err := image.MountKernelFilesystems(root)
	run.mounts = append(run.mounts, points...)
	if err != nil {
		return "", err
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		if err := syscall.Mount("overlay", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return "", fmt.Errorf("read-only root: %w", err)
		}
	}
	return root, nil
}

func (k *Kubelet) unmount(run *podRun) { image.Unmount(run.mounts) }

// writeConfigMap writes every key of a ConfigMap as a file in dir, as the
// kubelet does for a configMap volume without items.
func (k *Kubelet) writeConfigMap(ctx context.Context, namespace, name, dir string) error {
	cm, err := k.cp.Client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for key, val := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, key), []byte(val), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// projectsConfigMapsOnly reports a projected volume made of whole
// ConfigMaps and nothing else.
func projectsConfigMapsOnly(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ConfigMap == nil || len(s.ConfigMap.Items) > 0 {
			return false
		}
	}
	return len(p.Sources) > 0
}

func projectsToken(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

// serviceAccountFiles writes what the kubelet projects for a service
// account: a bound token from the TokenRequest API, the cluster CA and the
// namespace.
func (k *Kubelet) serviceAccountFiles(pod *corev1.Pod, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	expiry := int64(3600)
	tr, err := k.cp.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", pod.Spec.ServiceAccountName, err)
	}
	ca, err := os.ReadFile(k.cp.PKI.CACert)
	if err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(pod.Namespace)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// writeSecret writes every key of a Secret as a file in dir, as the kubelet
// does for a secret volume without items: with the volume's defaultMode
// (0644 if unset) and, with a pod fsGroup, owned by that group, so that
// 0440 keys are readable by the container's group only. A missing Secret
// keeps the pod from starting, as it does in a cluster.
func (k *Kubelet) writeSecret(ctx context.Context, namespace string, v *corev1.SecretVolumeSource, fsGroup int64, dir string) error {
	secret, err := k.cp.Client.CoreV1().Secrets(namespace).Get(ctx, v.SecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("secret volume %s: %w", v.SecretName, err)
	}
	mode := os.FileMode(0o644)
	if v.DefaultMode != nil {
		mode = os.FileMode(*v.DefaultMode)
	}
	for key, val := range secret.Data {
		file := filepath.Join(dir, key)
		if err := os.WriteFile(file, val, mode); err != nil {
			return err
		}
		if err := os.Chmod(file, mode); err != nil { // past the umask
			return err
		}
		if fsGroup >= 0 {
			if err := os.Chown(file, -1, int(fsGroup)); err != nil {
				return err
			}
		}
	}
	return nil
}
