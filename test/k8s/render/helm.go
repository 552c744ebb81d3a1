package render

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// ChartDir is the Helm chart users install.
func ChartDir() string {
	return filepath.Join(harness.RepoRoot(), "deploy", "helm", "tailgate")
}

// HelmBinary is the pinned Helm CLI (build/tools/kubernetes), built once and
// cached by version.
func HelmBinary() (string, error) { return harness.ToolBinary("helm", "helm") }

// Helm runs the Helm CLI with args and returns its standard output; an
// error carries what it printed on standard error.
func Helm(args ...string) (string, error) {
	helm, err := HelmBinary()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(helm, args...)
	// Ends with the test binary, like every process the harness starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Chart renders the chart as `helm template` does for a release of that
// name in namespace, with extra helm arguments (--set, -f, ...), and
// splits it into objects.
func Chart(release, namespace string, args ...string) ([]*unstructured.Unstructured, error) {
	out, err := Helm(append([]string{"template", release, ChartDir(), "--namespace", namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return Objects([]byte(out))
}
