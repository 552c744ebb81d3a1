package render

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tailgate-dev/tailgate/test/k8s/cluster"
)

// GCEnv is the garbage-collection environment (GOGC, GOMEMLIMIT) the base's
// workload of this kind ("Deployment" for the gateway, "DaemonSet" for the
// agent) gets once resized to memoryLimit bytes, its request scaled with
// it (0: as shipped): what a test that runs the binary in a cgroup of that size outside
// Kubernetes must set to run it as shipped. Variables the manifests derive
// from the pod's size are resolved as the kubelet resolves them.
func GCEnv(kind string, memoryLimit int64) (map[string]string, error) {
	out, err := Build(BaseDir())
	if err != nil {
		return nil, err
	}
	objs, err := Objects(out)
	if err != nil {
		return nil, err
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
				return nil, err
			}
			spec = d.Spec.Template.Spec
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := Strict(u, &d); err != nil {
				return nil, err
			}
			spec = d.Spec.Template.Spec
		}
		c := spec.Containers[0]
		limit, request := c.Resources.Limits.Memory().Value(), c.Resources.Requests.Memory().Value()
		if limit == 0 {
			return nil, fmt.Errorf("%s %s: no memory limit", kind, u.GetName())
		}
		if memoryLimit == 0 {
			memoryLimit = limit
		}
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(memoryLimit, resource.BinarySI)}
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(memoryLimit*request/limit, resource.BinarySI)}
		env := map[string]string{}
		for _, e := range c.Env {
			if e.Name != "GOGC" && e.Name != "GOMEMLIMIT" {
				continue
			}
			switch {
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			case e.ValueFrom.ResourceFieldRef != nil:
				v, err := cluster.ResourceFieldValue(c, e.ValueFrom.ResourceFieldRef)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %s: %w", kind, u.GetName(), e.Name, err)
				}
				env[e.Name] = v
			default:
				return nil, fmt.Errorf("%s %s: %s is neither a value nor a resourceFieldRef", kind, u.GetName(), e.Name)
			}
		}
		return env, nil
	}
	return nil, fmt.Errorf("no %s in %s", kind, BaseDir())
}
