// Package semconvtest is an empty stand-in so that `go mod tidy` can resolve
// an import made only by k8sattributesprocessor's own tests. It is never
// compiled into tailgate.
package semconvtest
