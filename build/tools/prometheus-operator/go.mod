// The prometheus-operator release whose CustomResourceDefinitions the live
// tests install, so that the chart's ServiceMonitor, PodMonitor and
// PrometheusRule are applied to a real API server, checked against the
// operator's own schemas and selected by labels as kube-prometheus-stack's
// Prometheus selects them (the operator itself does not run). The same
// release as the API types the manifests' tests decode with (go.mod; a
// test keeps the two equal). Nothing is built from it:
// scripts/install-crds.sh copies example/prometheus-operator-crd out of
// the module.
module github.com/tailgate-dev/tailgate/build/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.93.1
