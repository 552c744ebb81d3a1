package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// inHousePrefixes are the component types only tailgate has.
var inHousePrefixes = []string{"rebalance_guard", "span_limits", "mtls_server"}

func inHouse(id string) bool {
	for _, p := range inHousePrefixes {
		if id == p || strings.HasPrefix(id, p+"/") {
			return true
		}
	}
	return false
}

// baselineProfile writes the shipped profile of tier ("agent" or
// "gateway") minus its in-house components (processors and extensions: their configs, pipeline
// and service entries, and the receivers' middlewares naming them), for
// the baseline binary, which does not have them. Everything else is
// untouched.
func baselineProfile(tier string) (string, error) {
	data, err := os.ReadFile(harness.ProfilePath(tier))
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
	exts, _ := doc["extensions"].(map[string]any)
	for id := range exts {
		if inHouse(id) {
			delete(exts, id)
		}
	}
	service, _ := doc["service"].(map[string]any)
	if list, ok := service["extensions"].([]any); ok {
		service["extensions"] = slices.DeleteFunc(list, func(id any) bool { return inHouse(fmt.Sprint(id)) })
	}
	// Receivers name in-house extensions as their middlewares.
	receivers, _ := doc["receivers"].(map[string]any)
	for _, r := range receivers {
		protocols, _ := r.(map[string]any)["protocols"].(map[string]any)
		for _, p := range protocols {
			proto, _ := p.(map[string]any)
			if list, ok := proto["middlewares"].([]any); ok {
				proto["middlewares"] = slices.DeleteFunc(list, func(m any) bool {
					ref, _ := m.(map[string]any)
					return inHouse(fmt.Sprint(ref["id"]))
				})
			}
		}
	}
	pipelines, _ := service["pipelines"].(map[string]any)
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
	f, err := os.CreateTemp("", tier+"-baseline-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(out)
	return f.Name(), err
}

// guardMicrobenchmark runs the processor's per-span Go benchmark and
// returns its result lines.
func guardMicrobenchmark() (string, error) {
	return guardBenchmark("BenchmarkConsumeTraces", "2s")
}

// guardBenchmark runs one of rebalance_guard's Go benchmarks three times
// for benchtime each and returns its result lines and the CPU's.
func guardBenchmark(name, benchtime string) (string, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", name, "-benchmem", "-benchtime", benchtime, "-count", "3", ".")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "components", "processor", "rebalanceguardprocessor")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n"), nil
}
