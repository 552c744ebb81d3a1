package main

// Where each tier's CPU goes, and the profile-guided build: the shipped
// tiers run again at their ceilings with their CPU sampled (runs of their
// own, so that sampling costs the measured runs nothing). The samples give
// the report's breakdown, and `make pgo` merges them into
// cmd/tailgate/default.pgo, which `go build` uses for the binary.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// pgoFile is the profile `go build` reads for the binary (-pgo=auto: the
// main package's default.pgo).
func pgoFile() string {
	return filepath.Join(harness.RepoRoot(), "cmd", "tailgate", "default.pgo")
}

// withoutPGO stands for the binary built without its profile in a
// configuration, until buildWithoutPGO has built it.
const withoutPGO = "<tailgate built with -pgo=off>"

// buildWithoutPGO builds the binary as `make build` does, with the profile
// left out, so that one bench run compares the two.
func buildWithoutPGO(dir string) (string, error) {
	out := filepath.Join(dir, "tailgate-nopgo")
	cmd := exec.Command("go", "build", "-pgo=off", "-trimpath", "-ldflags=-s -w", "-mod=readonly", "-o", out, ".")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "cmd", "tailgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building without PGO: %w\n%s", err, b)
	}
	return out, nil
}

// profiledTiers are the configurations whose CPU the report breaks down
// and the PGO profile is made of: each tier as shipped.
var profiledTiers = []string{"tailgate agent", "tailgate gateway"}

// profileTiers runs each of profiledTiers among configs ceilingRuns times
// with its CPU sampled, and returns the profiles' files by configuration.
func profileTiers(configs []tierConfig, load ceilingLoads, dir string) (map[string][]string, error) {
	files := map[string][]string{}
	for i := range ceilingRuns {
		for _, c := range configs {
			if !slices.Contains(profiledTiers, c.name) {
				continue
			}
			file := filepath.Join(dir, fmt.Sprintf("%s.%d.pprof", fileName(c.name), i+1))
			if _, err := measureTier(c, load, file); err != nil {
				return nil, err
			}
			files[c.name] = append(files[c.name], file)
		}
	}
	return files, nil
}

// cpuShare is one row of a tier's breakdown: a part of the work and its
// share of the CPU samples.
type cpuShare struct {
	part  string
	share float64
}

// cpuParts name the work by the functions on a sample's stack: a sample
// belongs to the part of its innermost frame that names one, so each
// counts once (the receiver calls the whole pipeline synchronously, and a
// processor calls the next one: the outer frames say nothing of where the
// time went). Frames of no part (pdata, the runtime below a component)
// pass to the next frame out. Order matters only within one frame.
var cpuParts = []struct {
	part  string
	funcs *regexp.Regexp
}{
	{"span_metrics", regexp.MustCompile(`spanmetricsconnector`)},
	{"rebalance_guard", regexp.MustCompile(`rebalanceguardprocessor`)},
	// tail_sampling's samples on its tick loop count as
	// tailSamplingDecisions instead.
	{tailSamplingIngest, regexp.MustCompile(`tailsamplingprocessor`)},
	{"span_limits", regexp.MustCompile(`spanlimitsprocessor`)},
	{"memory_limiter", regexp.MustCompile(`memorylimiterprocessor|internal/memorylimiter`)},
	{"k8s_attributes", regexp.MustCompile(`k8sattributesprocessor`)},
	{"batch", regexp.MustCompile(`processor/batchprocessor`)},
	{"load_balancing (routing by trace ID)", regexp.MustCompile(`loadbalancingexporter`)},
	{"compression", regexp.MustCompile(`compress/gzip|compress/flate|klauspost/compress|golang/snappy`)},
	{"export (queue, OTLP encode, gRPC send)", regexp.MustCompile(`exporter/exporterhelper|exporter/otlpexporter|exporter/otlpgrpcexporter|codecV2\)\.Marshal$|grpc\.\(\*ClientConn\)|grpc\.\(\*clientStream\)|grpc\.\(\*csAttempt\)|transport\.\(\*http2Client\)|grpc\.invoke`)},
	{"fan-out to pipelines (copies)", regexp.MustCompile(`internal/fanoutconsumer|connector/forwardconnector`)},
	{"gRPC receive and OTLP decode", regexp.MustCompile(`receiver/otlpreceiver|codecV2\)\.Unmarshal$|transport\.\(\*http2Server\)|grpc\.\(\*Server\)|grpc\.\(\*serverStream\)|grpc\.recv|grpc\.\(\*parser\)`)},
	{"garbage collection (background marking)", regexp.MustCompile(`^runtime\.gcBgMarkWorker$`)},
}

// runtimeCosts are counted inside the parts above (cumulative, as in
// pprof): what allocation costs wherever it happens.
var runtimeCosts = []struct {
	part  string
	funcs *regexp.Regexp
}{
	{"allocation (mallocgc), inside the parts", regexp.MustCompile(`^runtime\.mallocgc$`)},
	{"of which zeroing fresh memory (memclrNoHeapPointers)", regexp.MustCompile(`^runtime\.memclrNoHeapPointers$`)},
	{"garbage collection assists, inside the parts", regexp.MustCompile(`^runtime\.gcAssistAlloc$`)},
}

const otherPart = "other (runtime scheduler, telemetry, timers)"

// tailSamplingDecisions is the part of tail_sampling samples on its tick
// loop's stack, which decides the traces whose decision_wait is over;
// tailSamplingIngest the rest of tail_sampling's.
const (
	tailSamplingDecisions = "tail_sampling: decisions (the tick loop)"
	tailSamplingIngest    = "tail_sampling: ingest (copying spans into traces)"
)

var tailSamplingTick = regexp.MustCompile(`tailsamplingprocessor\.\(\*tailSamplingSpanProcessor\)\.(samplingPolicyOnTick|makeDecision)`)

// breakdown reads profiles of one configuration and returns each part's
// share of their CPU samples, then the runtime's costs inside them.
func breakdown(files []string) (parts, runtime []cpuShare, err error) {
	p, err := mergeProfiles(files)
	if err != nil {
		return nil, nil, err
	}
	cpu := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
	if cpu < 0 {
		return nil, nil, fmt.Errorf("%s: no cpu samples", files[0])
	}
	var total, other, decisions float64
	byPart := make([]float64, len(cpuParts))
	byCost := make([]float64, len(runtimeCosts))
	for _, s := range p.Sample {
		v := float64(s.Value[cpu])
		total += v
		i := innermostPart(s)
		switch {
		case i >= 0 && cpuParts[i].part == tailSamplingIngest && stackHolds(s, tailSamplingTick):
			decisions += v
		case i >= 0:
			byPart[i] += v
		default:
			other += v
		}
		for i, c := range runtimeCosts {
			if stackHolds(s, c.funcs) {
				byCost[i] += v
			}
		}
	}
	if total == 0 {
		return nil, nil, fmt.Errorf("%s: empty profile", files[0])
	}
	for i, part := range cpuParts {
		parts = append(parts, cpuShare{part: part.part, share: byPart[i] / total})
	}
	parts = append(parts, cpuShare{part: otherPart, share: other / total}, cpuShare{part: tailSamplingDecisions, share: decisions / total})
	slices.SortStableFunc(parts, func(a, b cpuShare) int {
		switch {
		case a.share > b.share:
			return -1
		case a.share < b.share:
			return 1
		}
		return 0
	})
	parts = slices.DeleteFunc(parts, func(c cpuShare) bool { return c.share < 0.005 })
	for i, c := range runtimeCosts {
		runtime = append(runtime, cpuShare{part: c.part, share: byCost[i] / total})
	}
	return parts, runtime, nil
}

// innermostPart is the index in cpuParts of the part of the sample's
// innermost frame that names one, -1 for none.
func innermostPart(s *profile.Sample) int {
	for _, loc := range s.Location { // leaf first
		for _, line := range loc.Line { // inlined frames first
			if line.Function == nil {
				continue
			}
			for i, part := range cpuParts {
				if part.funcs.MatchString(line.Function.Name) {
					return i
				}
			}
		}
	}
	return -1
}

func stackHolds(s *profile.Sample, funcs *regexp.Regexp) bool {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil && funcs.MatchString(line.Function.Name) {
				return true
			}
		}
	}
	return false
}

func mergeProfiles(files []string) (*profile.Profile, error) {
	var ps []*profile.Profile
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		p, err := profile.Parse(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		ps = append(ps, p)
	}
	return profile.Merge(ps)
}

// writePGO merges every tier's profiles into the binary's default.pgo.
// Each tier ran for its own replay, so each weighs by the CPU it spent.
func writePGO(files map[string][]string, out string) error {
	var all []string
	for _, name := range profiledTiers {
		if len(files[name]) == 0 {
			return fmt.Errorf("no profile of %s for %s", name, out)
		}
		all = append(all, files[name]...)
	}
	p, err := mergeProfiles(all)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := p.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tierBreakdown is one shipped tier's breakdown.
type tierBreakdown struct{ parts, runtime []cpuShare }

// renderBreakdown is the report's table of where each shipped tier's CPU
// goes.
func renderBreakdown(breakdowns map[string]tierBreakdown) string {
	if len(breakdowns) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### Where the CPU goes\n\n")
	fmt.Fprintf(&sb, "Each shipped tier again at its ceiling, %d runs with its CPU sampled through its pprof extension for %d s (runs of their own: sampling costs the runs above nothing). Each sample counts for the part of its innermost frame that names one (test/cmd/bench/profile.go lists their functions): the pipeline runs synchronously from the receiver, so a part's share is its own work and that of the libraries it calls, not of the components after it. Then the runtime's costs inside those parts, cumulative as in pprof. These profiles are what `make pgo` merges into cmd/tailgate/default.pgo.\n\n", ceilingRuns, profileSeconds)
	fmt.Fprintf(&sb, "| Tier | Part | Share of CPU |\n|---|---|---|\n")
	for _, name := range profiledTiers {
		b := breakdowns[name]
		for _, s := range b.parts {
			fmt.Fprintf(&sb, "| %s | %s | %.0f%% |\n", name, s.part, 100*s.share)
		}
		for _, s := range b.runtime {
			fmt.Fprintf(&sb, "| %s | %s | %.0f%% |\n", name, s.part, 100*s.share)
		}
	}
	sb.WriteString("\n")
	return sb.String()
}
