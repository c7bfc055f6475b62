package hostinfo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestParseOSReleaseFixtures(t *testing.T) {
	tests := []struct {
		file string
		want Distro
	}{
		{"debian-12", Distro{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", PackageManager: "apt"}},
		{"ubuntu-24.04", Distro{ID: "ubuntu", IDLike: []string{"debian"}, VersionID: "24.04", PrettyName: "Ubuntu 24.04.1 LTS", PackageManager: "apt"}},
		{"fedora-41", Distro{ID: "fedora", VersionID: "41", PrettyName: "Fedora Linux 41 (Server Edition)", PackageManager: "dnf"}},
		{"rhel-9", Distro{ID: "rhel", IDLike: []string{"fedora"}, VersionID: "9.4", PrettyName: "Red Hat Enterprise Linux 9.4 (Plow)", PackageManager: "dnf"}},
		{"centos-stream-9", Distro{ID: "centos", IDLike: []string{"rhel", "fedora"}, VersionID: "9", PrettyName: "CentOS Stream 9", PackageManager: "dnf"}},
		{"opensuse-leap-15.6", Distro{ID: "opensuse-leap", IDLike: []string{"suse", "opensuse"}, VersionID: "15.6", PrettyName: "openSUSE Leap 15.6", PackageManager: "zypper"}},
		{"arch", Distro{ID: "arch", PrettyName: "Arch Linux", PackageManager: "pacman"}},
		{"alpine-3.20", Distro{ID: "alpine", VersionID: "3.20.3", PrettyName: "Alpine Linux v3.20", PackageManager: "apk"}},
		{"amzn-2023", Distro{ID: "amzn", IDLike: []string{"fedora"}, VersionID: "2023", PrettyName: "Amazon Linux 2023.6.20250218", PackageManager: "dnf"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "os-release", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseOSRelease(f)
			if err != nil {
				t.Fatalf("ParseOSRelease: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseEnvFileQuoting(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string // substring; empty means no error
	}{
		{"unquoted", "ID=debian\n", map[string]string{"ID": "debian"}, ""},
		{"double quotes", `NAME="Debian GNU/Linux"`, map[string]string{"NAME": "Debian GNU/Linux"}, ""},
		{"single quotes are literal", `A='x\"$y'`, map[string]string{"A": `x\"$y`}, ""},
		{"double-quote escapes", `A="a\"b\\c\$d\` + "`" + `e"`, map[string]string{"A": "a\"b\\c$d`e"}, ""},
		{"other backslash kept in double quotes", `A="C:\temp"`, map[string]string{"A": `C:\temp`}, ""},
		{"unquoted backslash escapes", `A=a\ b\"c`, map[string]string{"A": `a b"c`}, ""},
		{"concatenation like sh", `A="foo"'bar'baz`, map[string]string{"A": "foobarbaz"}, ""},
		{"empty values", "A=\nB=\"\"\nC=''", map[string]string{"A": "", "B": "", "C": ""}, ""},
		{"comments and blank lines", "# c\n\n  # indented\nA=1 # trailing\n\tB=2\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"commented-out key (Tumbleweed)", "# VERSION=\"20250910\"\nID=\"opensuse-tumbleweed\"\n", map[string]string{"ID": "opensuse-tumbleweed"}, ""},
		{"CRLF line ends", "A=1\r\nB=\"two\"\r\n", map[string]string{"A": "1", "B": "two"}, ""},
		{"no final newline", "A=1", map[string]string{"A": "1"}, ""},
		{"later assignment wins", "A=1\nA=2\n", map[string]string{"A": "2"}, ""},
		{"quoted value spans lines", "A=\"x\ny\"\nB=2", map[string]string{"A": "x\ny", "B": "2"}, ""},
		{"line continuation", "A=\"x\\\ny\"\nB=u\\\nv", map[string]string{"A": "xy", "B": "uv"}, ""},
		{"utf-8 kept", `PRETTY_NAME="Ubuntu “Noble” ü"`, map[string]string{"PRETTY_NAME": "Ubuntu “Noble” ü"}, ""},
		{"unquoted space is an error, rest still read", "A=one two\nB=2\n", map[string]string{"B": "2"}, "line 1: unexpected text after the value of A"},
		{"unterminated double quote", "A=1\nB=\"open\n", map[string]string{"A": "1"}, "line 2: unterminated double quote"},
		{"unterminated single quote", "B='open", map[string]string{}, "line 1: unterminated single quote"},
		{"not an assignment", "A=1\njunk\nC=3\n", map[string]string{"A": "1", "C": "3"}, "line 2: expected KEY=value"},
		{"key must not start with a digit", "1A=x\n", map[string]string{}, "line 1: expected KEY=value"},
		{"first error is reported", "x\ny\n", map[string]string{}, "line 1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile(strings.NewReader(tt.in))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseOSReleaseKeepsFieldsOnError(t *testing.T) {
	d, err := ParseOSRelease(strings.NewReader("ID=debian\nbroken line\nVERSION_ID=12\n"))
	if err == nil {
		t.Fatal("want an error for the broken line")
	}
	if d.ID != "debian" || d.VersionID != "12" || d.PackageManager != "apt" {
		t.Errorf("fields around the bad line were lost: %+v", d)
	}
}

func TestPackageManager(t *testing.T) {
	tests := []struct {
		name string
		d    Distro
		want string
	}{
		{"rocky through ID_LIKE", Distro{ID: "rocky", IDLike: []string{"rhel", "centos", "fedora"}, VersionID: "9.3"}, "dnf"},
		{"almalinux 8", Distro{ID: "almalinux", IDLike: []string{"rhel", "centos", "fedora"}, VersionID: "8.10"}, "dnf"},
		{"centos 7 has only yum", Distro{ID: "centos", IDLike: []string{"rhel", "fedora"}, VersionID: "7"}, "yum"},
		{"oracle linux 7.9", Distro{ID: "ol", IDLike: []string{"fedora"}, VersionID: "7.9"}, "yum"},
		{"amazon linux 2 has only yum", Distro{ID: "amzn", IDLike: []string{"centos", "rhel", "fedora"}, VersionID: "2"}, "yum"},
		{"amazon linux 2023", Distro{ID: "amzn", IDLike: []string{"fedora"}, VersionID: "2023"}, "dnf"},
		{"fedora rawhide without version", Distro{ID: "fedora"}, "dnf"},
		{"linux mint", Distro{ID: "linuxmint", IDLike: []string{"ubuntu", "debian"}, VersionID: "22"}, "apt"},
		{"pop os", Distro{ID: "pop", IDLike: []string{"ubuntu", "debian"}}, "apt"},
		{"manjaro", Distro{ID: "manjaro", IDLike: []string{"arch"}}, "pacman"},
		{"sles", Distro{ID: "sles", IDLike: []string{"suse"}, VersionID: "15.5"}, "zypper"},
		{"tumbleweed", Distro{ID: "opensuse-tumbleweed", IDLike: []string{"opensuse", "suse"}, VersionID: "20250910"}, "zypper"},
		{"upper-case ID tolerated", Distro{ID: "Debian"}, "apt"},
		{"nixos unknown", Distro{ID: "nixos", VersionID: "24.11"}, ""},
		{"void unknown", Distro{ID: "void"}, ""},
		{"empty", Distro{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := packageManager(tt.d); got != tt.want {
				t.Errorf("packageManager(%+v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestReadDistro(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		wantID  string
		wantErr string
	}{
		{"etc wins over usr/lib", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "etc/os-release"), "ID=frometc\n")
			writeFile(t, filepath.Join(root, "usr/lib/os-release"), "ID=fromusr\n")
		}, "frometc", ""},
		{"relative symlink as shipped", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "usr/lib/os-release"), "ID=linked\n")
			symlink(t, "../usr/lib/os-release", filepath.Join(root, "etc/os-release"))
		}, "linked", ""},
		{"only usr/lib", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "usr/lib/os-release"), "ID=usronly\n")
		}, "usronly", ""},
		{"absolute symlink stays inside root", func(t *testing.T, root string) {
			// Resolving /usr/lib/os-release on this host would say "debian"; the fallback must
			// read the file under root instead.
			writeFile(t, filepath.Join(root, "usr/lib/os-release"), "ID=insideroot\n")
			symlink(t, "/usr/lib/os-release", filepath.Join(root, "etc/os-release"))
		}, "insideroot", ""},
		{"malformed file reports path and line", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "etc/os-release"), "ID=debian\nVERSION=12 bookworm\n")
		}, "debian", "etc/os-release: line 2:"},
		{"none", func(t *testing.T, root string) {}, "", "cannot identify the distribution"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, root)
			d, err := ReadDistro(root)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if d.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", d.ID, tt.wantID)
			}
		})
	}
}

func TestReadDistroThisHost(t *testing.T) {
	testreq.File(t, "/etc/os-release", "a distribution's base-files")
	d, err := ReadDistro("/")
	if err != nil {
		t.Fatalf("ReadDistro(/): %v", err)
	}
	if d.ID == "" || d.PrettyName == "" {
		t.Errorf("this host's os-release gave an empty ID or PRETTY_NAME: %+v", d)
	}
}
