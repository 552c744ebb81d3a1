package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// RepoRoot is the repository's top directory, found from this source file so
// that tests and tools work from any working directory.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("harness: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ProfilePath is the path of a shipped profile ("agent" or "gateway").
func ProfilePath(profile string) string {
	return filepath.Join(RepoRoot(), "configs", profile+".yaml")
}

// BinaryPath is the tailgate binary under test: $TAILGATE_BIN, else bin/tailgate.
// It fails when the binary is missing instead of building it behind the
// caller's back: `make build` (or `make test`) builds it.
func BinaryPath() (string, error) {
	bin := os.Getenv("TAILGATE_BIN")
	if bin == "" {
		bin = filepath.Join(RepoRoot(), "bin", "tailgate")
	}
	if _, err := os.Stat(bin); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("tailgate binary %s not found: run `make build` first (make test does)", bin)
		}
		return "", err
	}
	return bin, nil
}
