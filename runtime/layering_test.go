// Package runtime_test guards the runtime's layering: the shim and the guest agent must not link
// installer code, which would grow both binaries and tie runtime releases to installer changes.
package runtime_test

import (
	"errors"
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/kata-deploy/kata-deploy"

// TestRuntimeDoesNotImportInstaller follows the imports of every package under runtime/ through
// the module's own packages and fails if one of them reaches installer/.
func TestRuntimeDoesNotImportInstaller(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	roots := runtimePackages(t, root)
	if len(roots) == 0 {
		t.Fatal("found no package under runtime/")
	}
	seen := map[string]bool{}
	for _, pkg := range roots {
		if path := findInstallerImport(t, root, pkg, seen, nil); path != nil {
			t.Errorf("%s links installer code: %s", pkg, strings.Join(path, " -> "))
		}
	}
}

// runtimePackages lists the import paths of the Go packages under root/runtime.
func runtimePackages(t *testing.T, root string) []string {
	t.Helper()
	var pkgs []string
	err := filepath.WalkDir(filepath.Join(root, "runtime"), func(dir string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if _, err := build.ImportDir(dir, build.ImportComment); err == nil {
			rel, _ := filepath.Rel(root, dir)
			pkgs = append(pkgs, module+"/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// findInstallerImport returns the import chain from pkg to an installer package, or nil. Only the
// module's own packages are followed: a dependency outside the module cannot import installer/.
func findInstallerImport(t *testing.T, root, pkg string, seen map[string]bool, chain []string) []string {
	t.Helper()
	chain = append(chain, pkg)
	if pkg == module+"/installer" || strings.HasPrefix(pkg, module+"/installer/") {
		return chain
	}
	if seen[pkg] {
		return nil
	}
	seen[pkg] = true
	dir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(pkg, module+"/")))
	p, err := build.ImportDir(dir, 0)
	if err != nil {
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		t.Fatalf("reading the imports of %s: %v", pkg, err)
	}
	for _, imp := range p.Imports {
		if imp != module && !strings.HasPrefix(imp, module+"/") {
			continue
		}
		if found := findInstallerImport(t, root, imp, seen, chain); found != nil {
			return found
		}
	}
	return nil
}
