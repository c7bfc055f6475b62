package distro

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// Two `make release` runs of the same tree into two folders give byte-identical packages, image
// archives and SHA256SUMS. The second compiles everything again in an empty Go build cache, so the binaries
// are really built twice (a shared cache would hand back the first build's).
func TestReleaseIsReproducible(t *testing.T) {
	testreq.Short(t, "builds the release twice, the second time from an empty build cache (minutes)")
	testreq.Commands(t, "make", "git")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(t.TempDir(), "release"), filepath.Join(t.TempDir(), "release")}
	for i, dir := range dirs {
		cmd := exec.Command("make", "-C", repo, "release", "RELEASE_DIR="+dir)
		if i == 1 {
			cmd.Env = append(os.Environ(), "GOCACHE="+t.TempDir())
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make release (%d): %v\n%s", i+1, err, out)
		}
	}
	sums := readFile(t, filepath.Join(dirs[0], SumsName))
	if !bytes.Equal(sums, readFile(t, filepath.Join(dirs[1], SumsName))) {
		t.Fatalf("SHA256SUMS differ:\n%s\n%s", sums, readFile(t, filepath.Join(dirs[1], SumsName)))
	}
	entries, err := os.ReadDir(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if !bytes.Equal(readFile(t, filepath.Join(dirs[0], e.Name())), readFile(t, filepath.Join(dirs[1], e.Name()))) {
			t.Errorf("%s differs between the two builds", e.Name())
		}
	}
	if len(names) < 4 || !strings.Contains(string(sums), ".deb\n") || !strings.Contains(string(sums), ".rpm\n") ||
		!strings.Contains(string(sums), "_amd64.oci.tar\n") {
		t.Errorf("the release holds %v; SHA256SUMS:\n%s", names, sums)
	}
	t.Logf("release: %v", names)
}
