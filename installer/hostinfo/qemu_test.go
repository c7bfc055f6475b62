package hostinfo

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestParseQEMUVersion(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    string
		wantErr bool
	}{
		{"debian", "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n", "7.2.19", false},
		{"debian rebuild suffix", "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n", "7.2.22", false},
		{"rhel qemu-kvm", "QEMU emulator version 8.2.0 (qemu-kvm-8.2.0-11.el9_4.6)\n", "8.2.0", false},
		{"upstream build", "QEMU emulator version 9.1.0\nCopyright (c) 2003-2024 Fabrice Bellard and the QEMU Project developers\n", "9.1.0", false},
		{"no space before package", "QEMU emulator version 2.11.1(Debian 1:2.11+dfsg-1ubuntu7.41)\n", "2.11.1", false},
		{"two components", "QEMU emulator version 8.2 (x)\n", "8.2", false},
		{"dev snapshot", "QEMU emulator version 9.0.50 (v9.0.0-1234-gdeadbeef)\n", "9.0.50", false},
		{"leading noise", "warning: something\nQEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6.22)\n", "6.2.0", false},
		{"not qemu", "bash: qemu: command not found\n", "", true},
		{"empty", "", "", true},
		{"no number", "QEMU emulator version unknown\n", "", true},
		{"single number", "QEMU emulator version 7 (x)\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseQEMUVersion(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeQEMU writes an executable script that prints out and exits with code.
func fakeQEMU(t *testing.T, path, out string, code int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nprintf '%s' '" + out + "'\nexit " + string(rune('0'+code)) + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindQEMU(t *testing.T) {
	testreq.Command(t, "sh") // runs the fake QEMU scripts
	const ver = `QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)\n`
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string) []string // returns search paths
		wantPath string                                  // relative to dir
		wantVer  string
		wantErr  string
	}{
		{"first directory with qemu wins", func(t *testing.T, dir string) []string {
			fakeQEMU(t, filepath.Join(dir, "b/qemu-system-x86_64"), ver, 0)
			fakeQEMU(t, filepath.Join(dir, "c/qemu-system-x86_64"), "QEMU emulator version 1.0.0\n", 0)
			return []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
		}, "b/qemu-system-x86_64", "8.2.2", ""},
		{"an executable entry is QEMU itself (RHEL qemu-kvm)", func(t *testing.T, dir string) []string {
			fakeQEMU(t, filepath.Join(dir, "libexec/qemu-kvm"), `QEMU emulator version 8.2.0 (qemu-kvm-8.2.0-11.el9_4.6)\n`, 0)
			return []string{filepath.Join(dir, "empty"), filepath.Join(dir, "libexec/qemu-kvm")}
		}, "libexec/qemu-kvm", "8.2.0", ""},
		{"non-executable file skipped", func(t *testing.T, dir string) []string {
			writeFile(t, filepath.Join(dir, "a/qemu-system-x86_64"), "not executable")
			fakeQEMU(t, filepath.Join(dir, "b/qemu-system-x86_64"), ver, 0)
			return []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
		}, "b/qemu-system-x86_64", "8.2.2", ""},
		{"relative entries ignored", func(t *testing.T, dir string) []string {
			fakeQEMU(t, filepath.Join(dir, "b/qemu-system-x86_64"), ver, 0)
			return []string{"", ".", "bin", filepath.Join(dir, "b")}
		}, "b/qemu-system-x86_64", "8.2.2", ""},
		{"not found", func(t *testing.T, dir string) []string {
			return []string{filepath.Join(dir, "a")}
		}, "", "", "qemu-system-x86_64 not found"},
		{"found but fails", func(t *testing.T, dir string) []string {
			fakeQEMU(t, filepath.Join(dir, "a/qemu-system-x86_64"), "boom", 1)
			return []string{filepath.Join(dir, "a")}
		}, "a/qemu-system-x86_64", "", "does not run"},
		{"found but not QEMU", func(t *testing.T, dir string) []string {
			fakeQEMU(t, filepath.Join(dir, "a/qemu-system-x86_64"), "hello", 0)
			return []string{filepath.Join(dir, "a")}
		}, "a/qemu-system-x86_64", "", "is this QEMU?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, err := findQEMU(tt.setup(t, dir), nil, nil)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			wantPath := ""
			if tt.wantPath != "" {
				wantPath = filepath.Join(dir, tt.wantPath)
			}
			if q.Path != wantPath || q.Version != tt.wantVer {
				t.Errorf("got path %q version %q, want %q %q", q.Path, q.Version, wantPath, tt.wantVer)
			}
		})
	}
}

func TestFindQEMUHelpers(t *testing.T) {
	dir := t.TempDir()
	fakeQEMU(t, filepath.Join(dir, "bin/qemu-system-x86_64"), `QEMU emulator version 7.2.19 (Debian)\n`, 0)
	writeFile(t, filepath.Join(dir, "share/qboot/bios.bin"), "rom")
	writeFile(t, filepath.Join(dir, "libexec/virtiofsd"), "not executable")
	fakeQEMU(t, filepath.Join(dir, "bin/virtiofsd"), "", 0)
	if err := os.MkdirAll(filepath.Join(dir, "share/qemu/qboot.rom"), 0o755); err != nil { // a directory is no ROM
		t.Fatal(err)
	}
	q, err := findQEMU([]string{filepath.Join(dir, "bin")},
		[]string{filepath.Join(dir, "share/qemu/qboot.rom"), filepath.Join(dir, "share/qboot/bios.bin")},
		[]string{filepath.Join(dir, "lib/virtiofsd"), filepath.Join(dir, "libexec/virtiofsd"), filepath.Join(dir, "bin/virtiofsd")})
	if err != nil {
		t.Fatal(err)
	}
	if q.QbootPath != filepath.Join(dir, "share/qboot/bios.bin") {
		t.Errorf("QbootPath = %q", q.QbootPath)
	}
	if q.VirtiofsdPath != filepath.Join(dir, "bin/virtiofsd") {
		t.Errorf("VirtiofsdPath = %q (a non-executable virtiofsd must be skipped)", q.VirtiofsdPath)
	}
	// Helpers are reported even when QEMU itself is missing.
	q, err = findQEMU(nil, []string{filepath.Join(dir, "share/qboot/bios.bin")}, nil)
	if err == nil || q.QbootPath == "" {
		t.Errorf("without QEMU: err %v, qboot %q", err, q.QbootPath)
	}
}

func TestDefaultQEMUSearchPaths(t *testing.T) {
	t.Setenv("PATH", "/first:/second")
	got := DefaultQEMUSearchPaths()
	want := []string{"/first", "/second", "/usr/bin", "/usr/libexec/qemu-kvm", "/usr/local/bin", "/opt/kata/bin"}
	if strings.Join(got, ":") != strings.Join(want, ":") {
		t.Errorf("got %v, want %v", got, want)
	}
}

// The real QEMU of this host, when installed (CI installs Debian's qemu-system-x86).
func TestFindQEMUThisHost(t *testing.T) {
	path := testreq.Command(t, "qemu-system-x86_64")
	q, err := FindQEMU(nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Path != path {
		t.Errorf("Path = %q, PATH lookup says %q", q.Path, path)
	}
	if !regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`).MatchString(q.Version) {
		t.Errorf("Version = %q", q.Version)
	}
	for _, c := range []struct{ got, candidate string }{
		{q.QbootPath, "/usr/share/qemu/qboot.rom"},
		{q.VirtiofsdPath, "/usr/lib/qemu/virtiofsd"},
	} {
		if _, err := os.Stat(c.candidate); err == nil && c.got != c.candidate {
			t.Errorf("%s exists but was reported as %q", c.candidate, c.got)
		}
	}
	t.Logf("%+v", q)
}
