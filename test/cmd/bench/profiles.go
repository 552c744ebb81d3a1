package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// inHousePrefixes are the component types only tailgate has.
var inHousePrefixes = []string{"rebalance_guard"}

func inHouse(id string) bool {
	for _, p := range inHousePrefixes {
		if id == p || strings.HasPrefix(id, p+"/") {
			return true
		}
	}
	return false
}

// baselineGatewayProfile writes the shipped gateway profile minus its
// in-house processors (their configs and pipeline entries), for the
// baseline binary, which does not have them. Everything else is untouched.
func baselineGatewayProfile() (string, error) {
	data, err := os.ReadFile(harness.ProfilePath("gateway"))
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", err
	}
	procs, _ := doc["processors"].(map[string]any)
	for id := range procs {
		if inHouse(id) {
			delete(procs, id)
		}
	}
	pipelines, _ := doc["service"].(map[string]any)["pipelines"].(map[string]any)
	for _, p := range pipelines {
		pl := p.(map[string]any)
		list, _ := pl["processors"].([]any)
		kept := list[:0]
		for _, id := range list {
			if !inHouse(fmt.Sprint(id)) {
				kept = append(kept, id)
			}
		}
		pl["processors"] = kept
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "gateway-baseline-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(out)
	return f.Name(), err
}

// guardMicrobenchmark runs the processor's Go benchmark and returns its
// result lines.
func guardMicrobenchmark() (string, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkConsumeTraces", "-benchmem", "-benchtime", "2s", "-count", "3", ".")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "components", "processor", "rebalanceguardprocessor")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("processor benchmark: %w\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n"), nil
}
