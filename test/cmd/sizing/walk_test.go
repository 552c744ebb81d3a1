package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"

	"github.com/tailgate-dev/tailgate/test/harness"
	k8srender "github.com/tailgate-dev/tailgate/test/k8s/render"
)

// TestWalkIsCurrent: docs/sizing.md's 5M spans/s walk is what the
// committed constants, ring skew, profile and benchmarks give; a new
// measurement or default without `make sizing-walk` fails here.
func TestWalkIsCurrent(t *testing.T) {
	in, err := readWalkInputs()
	require.NoError(t, err)
	assert.Equal(t, renderWalk(in), walkSection(filepath.Join(harness.RepoRoot(), "docs", "sizing.md")),
		"docs/sizing.md's walk is stale: run make sizing-walk")
}

// TestWalkUsesTheShippedPodAndHPA: the walk's pod and HPA constants are
// the base's gateway pod and HPA and the autoscaling component's target,
// as rendered by kustomize.
func TestWalkUsesTheShippedPodAndHPA(t *testing.T) {
	objs, err := k8srender.Overlay(t.TempDir(), []string{"autoscaling"}, "")
	require.NoError(t, err)
	base, err := k8srender.Build(k8srender.BaseDir())
	require.NoError(t, err)
	baseObjs, err := k8srender.Objects(base)
	require.NoError(t, err)
	var checked int
	for _, u := range append(objs, baseObjs...) {
		switch {
		case u.GetKind() == "Deployment" && u.GetName() == "tailgate-gateway":
			var d appsv1.Deployment
			require.NoError(t, k8srender.Strict(u, &d))
			res := d.Spec.Template.Spec.Containers[0].Resources
			assert.InDelta(t, walkPodCPUs, res.Requests.Cpu().AsApproximateFloat64(), 1e-9)
			assert.EqualValues(t, walkPodMemory, res.Limits.Memory().Value())
			checked++
		case u.GetKind() == "HorizontalPodAutoscaler":
			var h autoscalingv2.HorizontalPodAutoscaler
			require.NoError(t, k8srender.Strict(u, &h))
			for _, m := range h.Spec.Metrics {
				switch {
				case m.Resource != nil:
					assert.EqualValues(t, walkCPUTarget*100, *m.Resource.Target.AverageUtilization)
					checked++
				case m.External != nil:
					assert.InDelta(t, walkSpansTarget, m.External.Target.Value.AsApproximateFloat64(), 1e-9)
					checked++
				}
			}
		}
	}
	assert.Equal(t, 4, checked, "the gateway Deployment twice, the base's CPU target, the component's spans target")
}
