// Package render builds the kustomize base with the kustomize API (what
// `kubectl apply -k` runs) and decodes the objects strictly.
package render

import (
	"bytes"
	"fmt"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// BaseDir is the kustomize base users apply.
func BaseDir() string {
	return filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "base")
}

// Build renders a kustomization directory to multi-document YAML.
func Build(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return res.AsYaml()
}

// Objects splits rendered YAML into unstructured objects.
func Objects(rendered []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range bytes.Split(rendered, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Strict decodes an object into its typed form, failing on unknown or
// duplicate fields (a misspelled key in a manifest would otherwise be
// silently dropped by the API server).
func Strict(u *unstructured.Unstructured, into any) error {
	data, err := yaml.Marshal(u.Object)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}
