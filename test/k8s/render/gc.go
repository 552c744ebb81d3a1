package render

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// GCEnv is the garbage-collection environment (GOGC, GOMEMLIMIT) the base's
// workload of this kind ("Deployment" for the gateway, "DaemonSet" for the
// agent) gets once resized to memoryLimit bytes, its request scaled with
// it (0: as shipped): what a test that runs the binary in a cgroup of that size outside
// Kubernetes must set to run it as shipped. Variables the manifests derive
// from the pod's size are resolved as the kubelet resolves them.
func GCEnv(kind string, memoryLimit int64) (map[string]string, error) {
	c, name, err := baseContainer(kind)
	if err != nil {
		return nil, err
	}
	limit, request := c.Resources.Limits.Memory().Value(), c.Resources.Requests.Memory().Value()
	if limit == 0 {
		return nil, fmt.Errorf("%s %s: no memory limit", kind, name)
	}
	if memoryLimit == 0 {
		memoryLimit = limit
	}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(memoryLimit, resource.BinarySI)}
	// In big integers: limit x request overflows int64 from pods of a
	// few GiB (5 GiB x 3840 MiB is 2.2e19).
	scaled := new(big.Int).Mul(big.NewInt(memoryLimit), big.NewInt(request))
	scaled.Quo(scaled, big.NewInt(limit))
	c.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(scaled.Int64(), resource.BinarySI)}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.Name != "GOGC" && e.Name != "GOMEMLIMIT" {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ResourceFieldRef != nil:
			v, err := ResourceFieldValue(c, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %s: %w", kind, name, e.Name, err)
			}
			env[e.Name] = v
		default:
			return nil, fmt.Errorf("%s %s: %s is neither a value nor a resourceFieldRef", kind, name, e.Name)
		}
	}
	return env, nil
}

// PodMemoryLimit is the memory limit of the base's workload of this kind
// ("Deployment", "DaemonSet"): the cgroup a test runs the binary in to run
// it in the shipped pod's memory, memory_limiter reading it as in the pod.
func PodMemoryLimit(kind string) (int64, error) {
	c, name, err := baseContainer(kind)
	if err != nil {
		return 0, err
	}
	limit := c.Resources.Limits.Memory().Value()
	if limit == 0 {
		return 0, fmt.Errorf("%s %s: no memory limit", kind, name)
	}
	return limit, nil
}

// baseContainer is the collector container of the base's workload of this
// kind, and the workload's name.
func baseContainer(kind string) (corev1.Container, string, error) {
	out, err := Build(BaseDir())
	if err != nil {
		return corev1.Container{}, "", err
	}
	objs, err := Objects(out)
	if err != nil {
		return corev1.Container{}, "", err
	}
	for _, u := range objs {
		if u.GetKind() != kind {
			continue
		}
		var spec corev1.PodSpec
		switch kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := Strict(u, &d); err != nil {
				return corev1.Container{}, "", err
			}
			spec = d.Spec.Template.Spec
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := Strict(u, &d); err != nil {
				return corev1.Container{}, "", err
			}
			spec = d.Spec.Template.Spec
		}
		return spec.Containers[0], u.GetName(), nil
	}
	return corev1.Container{}, "", fmt.Errorf("no %s in %s", kind, BaseDir())
}

// ResourceFieldValue is container c's request or limit as the kubelet
// writes it into a resourceFieldRef variable: the quantity divided by the
// divisor (default 1), rounded up (the live suite's real kubelets resolve
// the same manifests). A limit the container does not set would be the
// node's allocatable; there is no node here, so that is an error rather
// than a made-up figure.
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
