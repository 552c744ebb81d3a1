// Empty stand-in for contrib's pkg/semconvtest, a test-only dependency of
// k8sattributesprocessor that the module proxy refuses at every version.
// It is only needed for `go mod tidy` to complete; no package of it is
// ever compiled into tailgate.
module github.com/open-telemetry/opentelemetry-collector-contrib/pkg/semconvtest

go 1.25
