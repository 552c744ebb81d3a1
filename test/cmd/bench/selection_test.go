package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

func TestCeilingSelection(t *testing.T) {
	builtin := []tierConfig{{name: "tailgate agent"}, {name: "stock agent"}, {name: "tailgate gateway"}}

	sel, err := newCeilingSelection("gateway", "mine=gateway:stock/gateway.yaml:GOGC=400,GOMEMLIMIT=1GiB", "", "/bin/tailgate")
	require.NoError(t, err)
	got := sel.apply(builtin)
	require.Len(t, got, 2)
	assert.Equal(t, "tailgate gateway", got[0].name)
	assert.Equal(t, tierConfig{name: "mine", tier: "gateway", bin: "/bin/tailgate", config: "stock/gateway.yaml",
		args: []string{harness.GatewayFeatureGates}, env: map[string]string{"GOGC": "400", "GOMEMLIMIT": "1GiB"}}, got[1],
		"a gateway runs with the shipped gateways' feature gates")
	assert.True(t, sel.partial())
	assert.Empty(t, sel.profileFile(got[0], 0), "no -cpuprofile, no profile")

	all, err := newCeilingSelection("", "", t.TempDir(), "/bin/tailgate")
	require.NoError(t, err)
	assert.False(t, all.partial(), "the full set writes the goals and the compression runs")
	assert.Equal(t, builtin, all.apply(builtin))
	assert.Contains(t, all.profileFile(tierConfig{name: "tailgate gateway", bin: "/bin/tailgate"}, 1), "tailgate_gateway.run2.pprof")
	assert.Contains(t, all.profileFile(tierConfig{name: "stock gateway", bin: "/bin/baseline"}, 0), "stock_gateway.run1.pprof", "the stock configs enable pprof too")

	other := filepath.Join(t.TempDir(), "tailgate-experiment")
	require.NoError(t, os.WriteFile(other, nil, 0o755))
	experiment, err := newCeilingSelection("^$", "exp=gateway:stock/gateway.yaml:bin="+other+",GOGC=50", "", "/bin/tailgate")
	require.NoError(t, err)
	got = experiment.apply(builtin)
	require.Len(t, got, 1)
	assert.Equal(t, other, got[0].bin, "bin= names the build to run")
	assert.Equal(t, map[string]string{"GOGC": "50"}, got[0].env, "bin= is not passed on as an environment variable")

	for _, bad := range []string{"mine=collector:stock/gateway.yaml", "mine=gateway", "mine=gateway:/no/such.yaml", "mine=gateway:stock/gateway.yaml:GOGC", "mine=gateway:stock/gateway.yaml:bin=/no/such/tailgate"} {
		_, err := newCeilingSelection("", bad, "", "/bin/tailgate")
		assert.Error(t, err, bad)
	}
	_, err = newCeilingSelection("(", "", "", "/bin/tailgate")
	assert.Error(t, err)
}

// TestUnmeasuredSectionsAreKept: a run that does not measure the
// compression again keeps the last report's section, and only it.
func TestUnmeasuredSectionsAreKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	require.NoError(t, os.WriteFile(path, []byte("# Benchmarks\n\n## Each tier\n\nA\n\n"+compressionHeading+"\n\n| gzip | 1 |\n\n## Whole topology\n\nB\n"), 0o644))
	assert.Equal(t, compressionHeading+"\n\n| gzip | 1 |\n\n", existingSection(path, compressionHeading))
	assert.Empty(t, existingSection(filepath.Join(t.TempDir(), "none.md"), compressionHeading))
}

// TestOptionalConfigurationsOnlyOnRequest: the optional rows are left
// out of a default run and measured when -only names them.
func TestOptionalConfigurationsOnlyOnRequest(t *testing.T) {
	configs := []tierConfig{{name: "a"}, {name: "b", optional: true}}
	all, err := newCeilingSelection("", "", "", "")
	require.NoError(t, err)
	assert.Equal(t, []tierConfig{{name: "a"}}, all.apply(configs))
	named, err := newCeilingSelection("^b$", "", "", "")
	require.NoError(t, err)
	assert.Equal(t, []tierConfig{{name: "b", optional: true}}, named.apply(configs))
}
