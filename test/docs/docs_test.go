package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// TestReadmeIsTheFrontDoor: README.md stays short, and opens with the two
// commands a newcomer runs.
func TestReadmeIsTheFrontDoor(t *testing.T) {
	text, err := Read("README.md")
	require.NoError(t, err)
	lines := strings.Count(text, "\n")
	assert.LessOrEqual(t, lines, 200, "README.md is the front door: move detail to a page under docs/")
	_, rest, ok := strings.Cut(text, "```sh\n")
	require.True(t, ok, "README.md opens with no shell block")
	first, _, _ := strings.Cut(rest, "```")
	assert.Regexp(t, `(?m)^make run\b`, first, "the first command is make run")
	assert.Regexp(t, `(?m)^make test\b`, first, "the second command is make test")
}

// markdownLink is an inline link's target; images and bare URLs included.
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinksResolve: every relative link of the documentation names a file
// of the repository, and every fragment a heading of its page.
func TestLinksResolve(t *testing.T) {
	pages, err := Pages()
	require.NoError(t, err)
	root := harness.RepoRoot()
	anchors := map[string]map[string]bool{}
	anchorsOf := func(page string) map[string]bool {
		if a, ok := anchors[page]; ok {
			return a
		}
		a := map[string]bool{}
		if text, err := Read(page); err == nil {
			for _, h := range Headings(text) {
				a[Anchor(h)] = true
			}
		}
		anchors[page] = a
		return a
	}
	for _, page := range pages {
		text, err := Read(page)
		require.NoError(t, err)
		for _, m := range markdownLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, fragment, _ := strings.Cut(target, "#")
			resolved := page
			if file != "" {
				resolved = filepath.Join(filepath.Dir(page), file)
				_, err := os.Stat(filepath.Join(root, resolved))
				if !assert.NoError(t, err, "%s links to %s, which does not exist", page, target) {
					continue
				}
			}
			if fragment != "" {
				assert.True(t, anchorsOf(resolved)[fragment], "%s links to %s: %s has no heading #%s", page, target, resolved, fragment)
			}
		}
	}
}

// figureShapes are how a measured figure reads: a ratio (1.05x), a
// throughput in thousands (92k), a count out of a total (60 of 60), a
// time in nanoseconds or microseconds, a fractional share (70.1%), bytes
// per item (677 B).
var figureShapes = regexp.MustCompile(`\b\d+(?:\.\d+)?x\b|\b\d+(?:\.\d+)?k\b|\b\d+ of \d+\b|\b\d+(?:\.\d+)? ?(?:ns|us|µs)\b|\b\d+\.\d+%|\b\d+ B\b`)

// TestFiguresComeFromTheGeneratedReports: a measured figure stated by hand
// in the documentation or in the profiles' comments goes stale when the
// next `make bench` or `make sizing` measures again. So every figure they
// state must be one the generated reports (docs/benchmarks.md,
// docs/sizing.md) hold, and the pages link there for the rest.
func TestFiguresComeFromTheGeneratedReports(t *testing.T) {
	pages, err := Pages()
	require.NoError(t, err)
	var generated strings.Builder
	type source struct{ name, text string }
	var sources []source
	for _, page := range pages {
		text, err := Read(page)
		require.NoError(t, err)
		if Generated(text) {
			generated.WriteString(text)
			continue
		}
		sources = append(sources, source{page, text})
	}
	require.NotZero(t, generated.Len(), "no generated report among the pages")
	configs, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "configs", "*.yaml"))
	require.NoError(t, err)
	examples, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "configs", "examples", "*.yaml"))
	require.NoError(t, err)
	for _, path := range append(configs, examples...) {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		var comments strings.Builder
		for _, line := range strings.Split(string(data), "\n") {
			_, comment, _ := strings.Cut(line, "#")
			comments.WriteString(comment + "\n") // one line per line: the failure names it
		}
		rel, _ := filepath.Rel(harness.RepoRoot(), path)
		sources = append(sources, source{rel + " (comments)", comments.String()})
	}
	for _, s := range sources {
		for i, line := range strings.Split(s.text, "\n") {
			for _, figure := range figureShapes.FindAllString(line, -1) {
				assert.Contains(t, generated.String(), figure,
					"%s:%d states %q, which no generated report holds: link docs/benchmarks.md or docs/sizing.md instead\n\t%s", s.name, i+1, figure, strings.TrimSpace(line))
			}
		}
	}
}

// alertRules are the shipped alerts: name, annotations.
func alertRules(t *testing.T) map[string]map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "monitoring", "prometheusrule.yaml"))
	require.NoError(t, err)
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert       string            `json:"alert"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(data, &rule))
	out := map[string]map[string]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Annotations
		}
	}
	require.NotEmpty(t, out)
	return out
}

// runbookBase is where the alerts' runbooks are published: the operations
// page of the repository's default branch.
const runbookBase = "https://github.com/tailgate-dev/tailgate/blob/main/docs/operations.md#"

// TestEveryAlertLinksItsRunbook: every alert's runbook_url is the anchor of
// a heading of docs/operations.md named after the alert, under "## Alerts",
// and every runbook there belongs to an alert that exists.
func TestEveryAlertLinksItsRunbook(t *testing.T) {
	section, err := Section("docs/operations.md", "## Alerts")
	require.NoError(t, err)
	runbooks := map[string]bool{}
	for _, h := range Headings(section) {
		runbooks[Anchor(h)] = true
	}
	alerts := alertRules(t)
	for name, annotations := range alerts {
		url := annotations["runbook_url"]
		if !assert.True(t, strings.HasPrefix(url, runbookBase), "%s: runbook_url %q is not a section of docs/operations.md", name, url) {
			continue
		}
		anchor := strings.TrimPrefix(url, runbookBase)
		assert.Equal(t, Anchor(name), anchor, "%s: runbook_url names another alert's runbook", name)
		assert.True(t, runbooks[anchor], "%s: docs/operations.md has no runbook #%s under ## Alerts", name, anchor)
	}
	for anchor := range runbooks {
		found := false
		for name := range alerts {
			found = found || Anchor(name) == anchor
		}
		assert.True(t, found, "docs/operations.md has a runbook #%s for no shipped alert", anchor)
	}
}

var (
	// helmValue is a value of the chart named in a fix (`gateway.resources`).
	helmValue = regexp.MustCompile("`((?:gateway|agent|<tier>|autoscaling|monitoring|mtls|networkPolicy|image)\\.[A-Za-z.]+|resolver|clusterName|policies)`")
	// profileKey is a profile setting named in a fix (`a::b::c`).
	profileKey = regexp.MustCompile("`([a-z_]+(?:::[A-Za-z_0-9/<>.]+)+)`")
)

// TestRunbookFixesNameRealSettings: each runbook says what it means, how
// to confirm it and how to fix it; the fix names a Helm value and a
// profile setting, and every value and setting a runbook names exists (in
// values.yaml, in a profile), so a renamed one cannot leave a runbook
// pointing nowhere.
func TestRunbookFixesNameRealSettings(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "helm", "tailgate", "values.yaml"))
	require.NoError(t, err)
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(data, &values))
	profiles := map[string]map[string]any{}
	for _, name := range profile.Names {
		profiles[name], err = profile.Raw(name)
		require.NoError(t, err)
	}
	for name := range alertRules(t) {
		runbook, err := Section("docs/operations.md", "### "+name)
		if !assert.NoError(t, err) {
			continue
		}
		for _, part := range []string{"**What it means.**", "**Confirm.**", "**Fix.**"} {
			assert.Contains(t, runbook, part, "runbook %s", name)
		}
		_, fix, _ := strings.Cut(runbook, "**Fix.**")
		assert.Contains(t, fix, "Helm", "runbook %s: the fix names no Helm value", name)
		assert.Contains(t, fix, "profile", "runbook %s: the fix names no profile setting", name)
		for _, m := range helmValue.FindAllStringSubmatch(runbook, -1) {
			for _, tier := range []string{"gateway", "agent"} {
				path := strings.Split(strings.ReplaceAll(m[1], "<tier>", tier), ".")
				assert.NotNil(t, profile.Get(values, path...), "runbook %s names the Helm value %s, which values.yaml does not have", name, m[1])
			}
		}
		for _, m := range profileKey.FindAllStringSubmatch(runbook, -1) {
			if strings.Contains(m[1], "<exporter>") {
				continue // any exporter of the user's
			}
			found := false
			for _, resolver := range []string{"dns", "k8s", "static"} {
				path := strings.Split(strings.ReplaceAll(m[1], "<resolver>", resolver), "::")
				for _, doc := range profiles {
					// The key, or the component it is a setting of.
					found = found || profile.Get(doc, path...) != nil || profile.Get(doc, path[:len(path)-1]...) != nil
				}
			}
			assert.True(t, found, "runbook %s names the profile setting %s, which no profile has", name, m[1])
		}
	}
}

// variableName is how a tailgate environment variable reads.
var variableName = regexp.MustCompile(`\bTAILGATE_[A-Z0-9_]+\b`)

// TestAlertsNameOnlyLiveVariables: the alerts and their runbooks name no
// environment variable the profiles stopped reading (the settings that
// were variables are YAML keys now, and a fix must name those).
func TestAlertsNameOnlyLiveVariables(t *testing.T) {
	read, err := profile.AllVariables()
	require.NoError(t, err)
	var texts []string
	for name, annotations := range alertRules(t) {
		for _, text := range annotations {
			texts = append(texts, name+": "+text)
		}
	}
	runbooks, err := Section("docs/operations.md", "## Alerts")
	require.NoError(t, err)
	texts = append(texts, runbooks)
	for _, text := range texts {
		for _, v := range variableName.FindAllString(text, -1) {
			_, isRead := read[v]
			assert.True(t, isRead, "%s is named in an alert or runbook, but no profile reads it:\n%.200s", v, text)
		}
	}
}
