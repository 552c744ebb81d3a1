package distribution

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// TestComponentMetadataInSync reruns mdatagen on a copy of each in-house
// component's metadata.yaml and compares what it generates with the
// committed files: a metadata.yaml edit without `make generate` fails here.
func TestComponentMetadataInSync(t *testing.T) {
	mdatagen := os.Getenv("TAILGATE_MDATAGEN")
	require.NotEmpty(t, mdatagen, "TAILGATE_MDATAGEN is not set: run the tests through `make test`")
	root := harness.RepoRoot()
	metas, err := filepath.Glob(filepath.Join(root, "components", "*", "*", "metadata.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, metas)
	for _, meta := range metas {
		dir := filepath.Dir(meta)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tmp := filepath.Join(t.TempDir(), filepath.Base(dir))
			require.NoError(t, os.MkdirAll(tmp, 0o755))
			// mdatagen needs the module and the package name, nothing else.
			for _, f := range []string{"metadata.yaml", "go.mod", "doc.go"} {
				data, err := os.ReadFile(filepath.Join(dir, f))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(tmp, f), data, 0o644))
			}
			cmd := exec.Command(mdatagen, "metadata.yaml")
			cmd.Dir = tmp
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			generated := 0
			require.NoError(t, filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				name := d.Name()
				if !strings.HasPrefix(name, "generated_") && name != "documentation.md" {
					return nil
				}
				rel, _ := filepath.Rel(tmp, path)
				want, _ := os.ReadFile(path)
				got, err := os.ReadFile(filepath.Join(dir, rel))
				generated++
				if assert.NoError(t, err, "%s is not committed: run `make generate`", rel) {
					assert.True(t, bytes.Equal(want, got), "%s is out of date with metadata.yaml: run `make generate`", rel)
				}
				return nil
			}))
			assert.Positive(t, generated)
		})
	}
}
