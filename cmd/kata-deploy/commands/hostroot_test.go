package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/hostroot"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// TestStageArtifacts: the image's shim, agent and kernel package are copied into a temporary
// host root, and the options name the copies as the host sees them.
func TestStageArtifacts(t *testing.T) {
	const deb = "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"
	for _, tc := range []struct {
		name       string
		files      []string
		kernelFlag bool
		dryRun     bool
		wantKernel string
	}{
		{name: "image kernel", files: []string{deb}, wantKernel: "/var/cache/kata-deploy/kernel/" + deb},
		{name: "no kernel: the host's", wantKernel: ""},
		{name: "--kernel", kernelFlag: true, wantKernel: "/var/cache/kata-deploy/kernel/linux-image-flag.deb"},
		{name: "dry run: nothing in the cache", files: []string{deb}, dryRun: true, wantKernel: "STAGING/" + deb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, root := t.TempDir(), t.TempDir()
			for _, f := range append([]string{layout.ShimName, layout.AgentName, "kata-deploy"}, tc.files...) {
				if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			a := install.ArtifactOptions{ArtifactsDir: src}
			if tc.kernelFlag {
				a.Kernel = filepath.Join(t.TempDir(), "linux-image-flag.deb")
				if err := os.WriteFile(a.Kernel, []byte("flag"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, _, err := hostroot.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			st, err := r.NewStaging()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Remove()
			if err := stageArtifacts(r, st, &a, tc.dryRun, false); err != nil {
				t.Fatal(err)
			}
			if a.ArtifactsDir != st.HostDir() || !strings.HasPrefix(a.ArtifactsDir, "/run/") {
				t.Errorf("artifacts dir %q, want the staging directory %q", a.ArtifactsDir, st.HostDir())
			}
			for _, f := range []string{layout.ShimName, layout.AgentName} {
				if b, err := os.ReadFile(filepath.Join(root, a.ArtifactsDir, f)); err != nil || string(b) != f {
					t.Errorf("%s in the host root: %q, %v", f, b, err)
				}
			}
			if want := strings.Replace(tc.wantKernel, "STAGING", st.HostDir(), 1); a.Kernel != want {
				t.Errorf("kernel %q, want %q", a.Kernel, want)
			}
			if _, err := os.Stat(filepath.Join(root, "var/cache")); tc.dryRun && err == nil {
				t.Error("a dry run wrote into the host's cache")
			}
			if a.Kernel != "" {
				if _, err := os.Stat(filepath.Join(root, a.Kernel)); err != nil {
					t.Errorf("kernel package not in the host root: %v", err)
				}
			}
		})
	}
}
