package render

import (
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/tailgate-dev/tailgate/test/harness"
)

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z0-9_]+)(?::-([^}]*))?\}`)

// Profile loads a shipped profile as the collector would see it with the
// given environment: `${env:VAR:-default}` takes env[VAR] when set, else its
// default.
func Profile(name string, env map[string]string) (map[string]any, error) {
	data, err := os.ReadFile(harness.ProfilePath(name))
	if err != nil {
		return nil, err
	}
	expanded := envRef.ReplaceAllStringFunc(string(data), func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := env[m[1]]; ok {
			return v
		}
		return m[2]
	})
	var cfg map[string]any
	return cfg, yaml.Unmarshal([]byte(expanded), &cfg)
}

// Get walks a parsed YAML document by keys.
func Get(doc any, keys ...string) any {
	for _, k := range keys {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[k]
	}
	return doc
}
