package cluster

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resourceFieldRef values as the kubelet writes them: ceil(quantity /
// divisor), CPU in millicores, an unset request read as the limit.
func TestResourceFieldValue(t *testing.T) {
	c := corev1.Container{Name: "tailgate", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi"), corev1.ResourceCPU: resource.MustParse("250m")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi"), corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceEphemeralStorage: resource.MustParse("1G")},
	}}
	for _, tc := range []struct {
		resource, divisor, want string
	}{
		{"requests.memory", "", "1073741824"},
		{"limits.memory", "", "2147483648"},
		{"limits.memory", "1Mi", "2048"},
		{"requests.memory", "1G", "2"}, // 1.07 G, rounded up
		{"requests.cpu", "1m", "250"},
		{"requests.cpu", "", "1"}, // a quarter core, rounded up
		{"limits.cpu", "1", "2"},
		{"requests.ephemeral-storage", "1M", "1000"}, // no request: the limit
	} {
		ref := &corev1.ResourceFieldSelector{Resource: tc.resource}
		if tc.divisor != "" {
			ref.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := ResourceFieldValue(c, ref)
		require.NoError(t, err, tc.resource)
		assert.Equal(t, tc.want, got, "%s / %q", tc.resource, tc.divisor)
	}
	_, err := ResourceFieldValue(c, &corev1.ResourceFieldSelector{Resource: "limits.hugepages-2Mi"})
	assert.Error(t, err, "a limit the container does not set")
	_, err = ResourceFieldValue(c, &corev1.ResourceFieldSelector{Resource: "memory"})
	assert.Error(t, err)
}
