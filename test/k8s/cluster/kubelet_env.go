package cluster

// The container's environment, resolved as the kubelet resolves it.

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// containerEnv resolves the container's env as the kubelet would, plus the
// variables every container gets.
func (k *Kubelet) containerEnv(pod *corev1.Pod, c corev1.Container, run *podRun) (map[string]string, error) {
	env := map[string]string{
		"HOSTNAME":                pod.Name,
		"KUBERNETES_SERVICE_HOST": "127.0.0.1",
		"KUBERNETES_SERVICE_PORT": strconv.Itoa(k.cp.APIPort),
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				env[e.Name] = run.ip
			case "spec.nodeName":
				env[e.Name] = pod.Spec.NodeName
			case "metadata.name":
				env[e.Name] = pod.Name
			case "metadata.namespace":
				env[e.Name] = pod.Namespace
			case "status.hostIP":
				env[e.Name] = k.nodeIP(pod.Spec.NodeName)
			default:
				return nil, fmt.Errorf("env %s: unsupported fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			v, err := containerResourceField(pod, c, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			v, ok, err := k.configMapKey(pod.Namespace, e.ValueFrom.ConfigMapKeyRef)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			if ok {
				env[e.Name] = v
			}
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	return env, nil
}

// loopbackArgs are the --set flags that give a pod's pprof and zPages,
// which the profiles bind to 127.0.0.1, ports of their own (Kubelet: the
// pods share one loopback here).
func loopbackArgs() ([]string, error) {
	debug, err := harness.FreePorts(2)
	if err != nil {
		return nil, err
	}
	return []string{
		"--set=extensions::pprof::endpoint=127.0.0.1:" + strconv.Itoa(debug[0]),
		"--set=extensions::zpages::endpoint=127.0.0.1:" + strconv.Itoa(debug[1]),
	}, nil
}

// containerResourceField resolves a resourceFieldRef of container c, which
// may name another container of the pod.
func containerResourceField(pod *corev1.Pod, c corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName == "" || ref.ContainerName == c.Name {
		return ResourceFieldValue(c, ref)
	}
	for _, other := range pod.Spec.Containers {
		if other.Name == ref.ContainerName {
			return ResourceFieldValue(other, ref)
		}
	}
	return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
}

// ResourceFieldValue is container c's request or limit as the kubelet
// writes it into a resourceFieldRef variable: the quantity divided by the
// divisor (default 1), rounded up. A limit the container does not set
// would be the node's allocatable; the process kubelet's nodes have none to
// offer, so that is an error here rather than a made-up figure.
func ResourceFieldValue(c corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	var list corev1.ResourceList
	switch {
	case ok && kind == "requests":
		list = c.Resources.Requests
		if _, set := list[corev1.ResourceName(name)]; !set {
			// An unset request defaults to the limit.
			list = c.Resources.Limits
		}
	case ok && kind == "limits":
		list = c.Resources.Limits
	default:
		return "", fmt.Errorf("resourceFieldRef: unsupported resource %q", ref.Resource)
	}
	q, set := list[corev1.ResourceName(name)]
	if !set {
		return "", fmt.Errorf("resourceFieldRef %s: not set on container %s (the node's allocatable is not modelled)", ref.Resource, c.Name)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	// As the kubelet (ExtractContainerResourceValue): ceil(q / divisor),
	// CPU in millicores so that fractions of a core survive.
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// configMapKey reads a ConfigMap key from the API, as the kubelet does: a
// missing ConfigMap or key is an error unless the reference is optional,
// in which case the variable is left unset.
func (k *Kubelet) configMapKey(namespace string, ref *corev1.ConfigMapKeySelector) (string, bool, error) {
	optional := ref.Optional != nil && *ref.Optional
	cm, err := k.cp.Client.CoreV1().ConfigMaps(namespace).Get(context.Background(), ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && optional:
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("configMapKeyRef %s/%s: %w", namespace, ref.Name, err)
	}
	v, ok := cm.Data[ref.Key]
	if !ok && !optional {
		return "", false, fmt.Errorf("configMapKeyRef %s/%s: no key %q", namespace, ref.Name, ref.Key)
	}
	return v, ok, nil
}
