package distro

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/configs"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestPackageVersion(t *testing.T) {
	commit := time.Date(2026, 12, 6, 22, 1, 59, 0, time.UTC)
	for _, tc := range []struct {
		describe, want string
		err            bool
	}{
		{"v1.2.3", "1.2.3", false},
		{"1.2.3", "1.2.3", false},
		{"v1.2.3-dirty", "1.2.3+dirty", false},
		{"v1.2.3-4-gabcdef0", "1.2.3+4.gabcdef0", false},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+4.gabcdef0.dirty", false},
		{"v1.2.3~rc1", "1.2.3~rc1", false},
		{"54a6947", "0.0.0+git20261206220159.54a6947", false},
		{"54a6947-dirty", "0.0.0+git20261206220159.54a6947.dirty", false},
		{"", "", true},
		{"main", "", true},
		{"v1.2.3;rm -rf /", "", true},
		{"../1.2.3", "", true},
	} {
		got, err := PackageVersion(tc.describe, commit)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("PackageVersion(%q) = %q, %v; want %q (error %v)", tc.describe, got, err, tc.want, tc.err)
		}
	}
}

// A later commit with no tag sorts after an earlier one, and a tag after both.
func TestPackageVersionOrdersForDpkg(t *testing.T) {
	dpkg := testreq.Command(t, "dpkg")
	early, _ := PackageVersion("aaaaaaa", time.Unix(1_700_000_000, 0))
	late, _ := PackageVersion("0000000", time.Unix(1_700_000_100, 0))
	for _, pair := range [][2]string{{early, late}, {late, "0.1.0"}, {"1.2.3", "1.2.3+4.gabcdef0"}} {
		if err := exec.Command(dpkg, "--compare-versions", pair[0], "lt", pair[1]).Run(); err != nil {
			t.Errorf("dpkg: %s is not lower than %s", pair[0], pair[1])
		}
	}
}

// testOptions packages small stand-ins for the binaries, so the test needs no build.
func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	root := func() *cobra.Command {
		r := &cobra.Command{Use: "kata-deploy", Short: "test"}
		r.AddCommand(&cobra.Command{Use: "install", Short: "install", Run: func(*cobra.Command, []string) {}},
			&cobra.Command{Use: "secret", Hidden: true, Run: func(*cobra.Command, []string) {}})
		return r
	}
	return Options{BinDir: bin, Config: "../../configs/configuration-qemu.toml", License: "../../LICENSE",
		Version: "1.2.3", MTime: time.Unix(1_700_000_000, 0).UTC(), OutDir: filepath.Join(dir, "out"), Root: root}
}

// wantFiles are the regular files and links both packages hold (besides the family's own).
var wantFiles = []string{
	"/usr/bin/kata-deploy",
	"/usr/bin/kata-guest-image",
	"/usr/lib/kata-deploy/containerd-shim-kata-v2",
	"/usr/lib/kata-deploy/kata-agent",
	"/usr/lib/kata-deploy/kata-deploy",
	"/usr/lib/kata-deploy/kata-guest-image",
	"/usr/lib/kata-deploy/kata-plugins",
	"/usr/lib/systemd/system/kata-plugins.service",
	"/usr/share/bash-completion/completions/kata-deploy",
	"/usr/share/fish/vendor_completions.d/kata-deploy.fish",
	"/usr/share/kata-deploy/defaults/configuration-qemu.toml",
	"/usr/share/man/man1/kata-deploy-completion-bash.1.gz",
	"/usr/share/man/man1/kata-deploy-completion-fish.1.gz",
	"/usr/share/man/man1/kata-deploy-completion-powershell.1.gz",
	"/usr/share/man/man1/kata-deploy-completion-zsh.1.gz",
	"/usr/share/man/man1/kata-deploy-completion.1.gz",
	"/usr/share/man/man1/kata-deploy-install.1.gz",
	"/usr/share/man/man1/kata-deploy.1.gz",
}

var wantFamilyFiles = map[string][]string{
	"deb": {"/usr/share/doc/kata-deploy/README.Debian", "/usr/share/doc/kata-deploy/copyright", "/usr/share/zsh/vendor-completions/_kata-deploy"},
	"rpm": {"/usr/share/doc/kata-deploy/README.packages", "/usr/share/licenses/kata-deploy/LICENSE", "/usr/share/zsh/site-functions/_kata-deploy"},
}

// The packages hold exactly the expected files (no hidden command's man page), as dpkg-deb and
// rpm list them, and their scripts uninstall on removal and upgrade on upgrade.
func TestBuildContents(t *testing.T) {
	dpkgDeb := testreq.Command(t, "dpkg-deb", "dpkg")
	rpm := testreq.Command(t, "rpm")
	o := testOptions(t)
	paths, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "kata-deploy_1.2.3_amd64.deb" || filepath.Base(paths[1]) != "kata-deploy-1.2.3.x86_64.rpm" {
		t.Fatalf("packages: %v", paths)
	}
	debList := output(t, dpkgDeb, "-c", paths[0])
	checkFiles(t, "deb", debFiles(debList))
	if !strings.Contains(debList, "./usr/bin/kata-deploy -> /usr/lib/kata-deploy/kata-deploy") {
		t.Errorf("deb: /usr/bin/kata-deploy is not a link into /usr/lib/kata-deploy:\n%s", debList)
	}
	if !strings.Contains(debList, "-rwxr-xr-x root/root") || !strings.Contains(debList, "2023-11-14 22:13 ./usr/lib/kata-deploy/kata-agent") {
		t.Errorf("deb: modes, owners or times are not the fixed ones:\n%s", debList)
	}
	rpmList := output(t, rpm, "-qlp", paths[1])
	checkFiles(t, "rpm", rpmFiles(t, rpm, paths[1]))
	if !strings.Contains(rpmList, "/usr/lib/kata-deploy\n") {
		t.Errorf("rpm does not own /usr/lib/kata-deploy (erase would leave it):\n%s", rpmList)
	}

	control := output(t, dpkgDeb, "-f", paths[0])
	for _, want := range []string{"Version: 1.2.3\n", "Depends: libc6, qemu-system-x86, apt\n", "Architecture: amd64\n"} {
		if !strings.Contains(control, want) {
			t.Errorf("deb control lacks %q:\n%s", want, control)
		}
	}
	requires := output(t, rpm, "-qp", "--requires", paths[1])
	if !strings.Contains(requires, "(qemu-kvm-core or qemu-system-x86-core)") {
		t.Errorf("rpm requires:\n%s", requires)
	}
	scripts := output(t, rpm, "-qp", "--scripts", paths[1])
	for _, want := range []string{"/usr/lib/kata-deploy/kata-deploy uninstall --prefix \"/opt/kata-deploy\"", "/usr/lib/kata-deploy/kata-deploy upgrade --prefix \"/opt/kata-deploy\"", "rm -rf /var/cache/kata-deploy/kernel /var/cache/kata-deploy/kernels"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
		}
	}
	dir := t.TempDir()
	output(t, dpkgDeb, "-e", paths[0], dir)
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(dir, s)).CombinedOutput(); err != nil {
			t.Errorf("deb %s is not valid sh: %v\n%s", s, err, out)
		}
		// The plugin is started by install --with-plugins, never by the package.
		if data := readFile(t, filepath.Join(dir, s)); bytes.Contains(data, []byte("systemctl")) || bytes.Contains(data, []byte("kata-plugins")) {
			t.Errorf("deb %s starts or names the plugin:\n%s", s, data)
		}
	}
	if strings.Contains(scripts, "systemctl") || strings.Contains(scripts, "kata-plugins") {
		t.Errorf("rpm scripts start or name the plugin:\n%s", scripts)
	}
	data := t.TempDir()
	output(t, dpkgDeb, "-x", paths[0], data)
	if got := readFile(t, filepath.Join(data, PluginsUnit)); !bytes.Equal(got, configs.PluginsUnit) {
		t.Errorf("deb %s:\n%s\nwant configs/kata-plugins.service", PluginsUnit, got)
	}
}

// The same inputs give the same bytes: nothing of the build machine or the clock gets in.
func TestBuildIsReproducible(t *testing.T) {
	o := testOptions(t)
	first, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	o.OutDir = t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "") // the build's time comes from Options only
	second, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		a, b := readFile(t, first[i]), readFile(t, second[i])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", filepath.Base(first[i]))
		}
	}
}

func TestBuildRefusesMissingBinaries(t *testing.T) {
	o := testOptions(t)
	if err := os.Remove(filepath.Join(o.BinDir, "kata-agent")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "kata-agent") {
		t.Errorf("Build without kata-agent: %v", err)
	}
	if _, err := os.Stat(o.OutDir); !os.IsNotExist(err) {
		t.Errorf("a refused build left %s", o.OutDir)
	}
}

func TestBuildRefusesUnsafeVersions(t *testing.T) {
	for _, v := range []string{"", "../1.0", "1.0/x", "v1.0", "1.0 2", "1.0-1"} {
		o := testOptions(t)
		o.Version = v
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "package version") {
			t.Errorf("Build with version %q: %v", v, err)
		}
	}
}

func TestWriteSums(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"b.rpm": "b", "a.deb": "a", ".hidden": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteSums(dir); err != nil {
		t.Fatal(err)
	}
	want := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  a.deb\n" +
		"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  b.rpm\n"
	if got := string(readFile(t, filepath.Join(dir, SumsName))); got != want {
		t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", got, want)
	}
	if err := WriteSums(t.TempDir()); err == nil {
		t.Error("WriteSums of an empty folder succeeded")
	}
}

func checkFiles(t *testing.T, family string, got []string) {
	t.Helper()
	want := append(append([]string{}, wantFiles...), wantFamilyFiles[family]...)
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s files:\n%s\nwant:\n%s", family, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// debFiles are the files and links of dpkg-deb -c's listing.
func debFiles(list string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || strings.HasPrefix(f[0], "d") {
			continue
		}
		out = append(out, strings.TrimPrefix(f[5], "."))
	}
	return out
}

// rpmFiles are the rpm's files and links (directories left out).
func rpmFiles(t *testing.T, rpm, pkg string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(output(t, rpm, "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]", pkg)), "\n") {
		mode, name, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(mode, "d") {
			out = append(out, name)
		}
	}
	return out
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC") // dpkg-deb -c prints times in the local zone
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
