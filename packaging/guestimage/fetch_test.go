package guestimage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const aptDependsOutput = `linux-image-amd64
  Depends: linux-image-6.1.0-57-amd64
`

const aptPolicyOutput = `linux-image-6.1.0-57-amd64:
  Installed: (none)
  Candidate: 6.1.192-3
  Version table:
     6.1.192-3 500
        500 http://example.invalid/debian-security bookworm-security/main amd64 Packages
`

// sha256 of "deb", the content the fake apt-get download writes.
const debSHA256 = "9cfa1468c93fc18652e34a000f0c6614b0fa18f6f4887477ad9b0d36ca6a7eaa"

func aptShowOutput(pkg, version, sum string) string {
	return "Package: " + pkg + "\nVersion: 6.1.0-old\nSHA256: " + strings.Repeat("0", 64) + "\n\n" +
		"Package: " + pkg + "\nVersion: " + version + "\nDescription: Linux\n a long description\nSHA256: " + sum + "\n\n"
}

func TestKernelDependency(t *testing.T) {
	tests := []struct {
		out, want string
	}{
		{aptDependsOutput, "linux-image-6.1.0-57-amd64"},
		{"linux-image-amd64\n  Depends: linux-base\n  Depends: linux-image-6.12.9-amd64\n", "linux-image-6.12.9-amd64"},
		{"linux-image-amd64\n |Depends: linux-image-6.1.0-1-amd64\n", "linux-image-6.1.0-1-amd64"},
		{"linux-image-amd64\n  Depends: linux-image-amd64-signed-template\n", ""},
		{"E: No packages found\n", ""},
	}
	for _, tc := range tests {
		if got := kernelDependency([]byte(tc.out)); got != tc.want {
			t.Errorf("kernelDependency(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func TestCandidateFromPolicy(t *testing.T) {
	tests := map[string]string{
		aptPolicyOutput:                     "6.1.192-3",
		"x:\n  Candidate: (none)\n":         "",
		"":                                  "",
		"x:\n  Candidate: 1:2.0~rc1+b2-3\n": "1:2.0~rc1+b2-3",
	}
	for in, want := range tests {
		if got := candidateFromPolicy([]byte(in)); got != want {
			t.Errorf("candidateFromPolicy(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckKernelPackage(t *testing.T) {
	tests := []struct {
		pkg, err string
	}{
		{"linux-image-6.1.0-57-amd64", ""},
		{"linux-image-6.1.0-57-cloud-amd64", "no 9p support"},
		{"-oDebug::pkgProblemResolver=1", "odd kernel package name"},
		{"linux-image-6.1;rm -rf", "odd kernel package name"},
		{"Linux-Image", "odd kernel package name"},
	}
	for _, tc := range tests {
		_, err := checkKernelPackage(tc.pkg)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkKernelPackage(%q) = %v, want %q", tc.pkg, err, tc.err)
		}
	}
}

// fakeApt answers apt-cache/apt-get calls from a table and records them.
type fakeApt struct {
	answers map[string]string // "name arg1 arg2" -> output; missing means failure
	calls   []string
	onCall  func(dir string, args []string)
}

func (f *fakeApt) run(_ context.Context, dir, name string, args ...string) ([]byte, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	f.calls = append(f.calls, key)
	if f.onCall != nil {
		f.onCall(dir, args)
	}
	out, ok := f.answers[key]
	if !ok {
		return []byte("E: Unable to locate package"), errors.New("exit status 100")
	}
	return []byte(out), nil
}

func TestFetchDebianKernel(t *testing.T) {
	release := func() (string, error) { return "6.1.0-40-amd64", nil }
	downloaded := func(dir string, args []string) {
		if len(args) == 2 && args[0] == "download" {
			name := strings.Replace(args[1], "=", "_", 1) + "_amd64.deb"
			os.WriteFile(filepath.Join(dir, name), []byte("deb"), 0o644)
		}
	}
	tests := []struct {
		name    string
		answers map[string]string
		want    string // base name of the returned path
		wantErr string
		calls   []string // calls that must have happened
	}{
		{
			name: "metapackage dependency",
			answers: map[string]string{
				"apt-cache depends linux-image-amd64":                   aptDependsOutput,
				"apt-cache policy linux-image-6.1.0-57-amd64":           aptPolicyOutput,
				"apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3":   aptShowOutput("linux-image-6.1.0-57-amd64", "6.1.192-3", debSHA256),
				"apt-get download linux-image-6.1.0-57-amd64=6.1.192-3": "",
			},
			want:  "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb",
			calls: []string{"apt-get download linux-image-6.1.0-57-amd64=6.1.192-3"},
		},
		{
			name: "running kernel when the metapackage is unknown",
			answers: map[string]string{
				"apt-cache policy linux-image-6.1.0-40-amd64":           "p:\n  Candidate: 6.1.150-1\n",
				"apt-cache show linux-image-6.1.0-40-amd64=6.1.150-1":   aptShowOutput("linux-image-6.1.0-40-amd64", "6.1.150-1", debSHA256),
				"apt-get download linux-image-6.1.0-40-amd64=6.1.150-1": "",
			},
			want: "linux-image-6.1.0-40-amd64_6.1.150-1_amd64.deb",
		},
		{
			name:    "nothing known",
			answers: map[string]string{},
			wantErr: "apt knows neither",
		},
		{
			name: "cloud kernel refused",
			answers: map[string]string{
				"apt-cache depends linux-image-amd64": "linux-image-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n",
			},
			wantErr: "-cloud kernel",
		},
		{
			name: "download fails",
			answers: map[string]string{
				"apt-cache depends linux-image-amd64":                 aptDependsOutput,
				"apt-cache policy linux-image-6.1.0-57-amd64":         aptPolicyOutput,
				"apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3": aptShowOutput("linux-image-6.1.0-57-amd64", "6.1.192-3", debSHA256),
			},
			wantErr: "apt-get download linux-image-6.1.0-57-amd64=6.1.192-3 failed",
		},
		{
			name: "download not what apt's index says",
			answers: map[string]string{
				"apt-cache depends linux-image-amd64":                   aptDependsOutput,
				"apt-cache policy linux-image-6.1.0-57-amd64":           aptPolicyOutput,
				"apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3":   aptShowOutput("linux-image-6.1.0-57-amd64", "6.1.192-3", strings.Repeat("a", 64)),
				"apt-get download linux-image-6.1.0-57-amd64=6.1.192-3": "",
			},
			wantErr: "the download is refused",
		},
		{
			name: "no SHA256 from apt",
			answers: map[string]string{
				"apt-cache depends linux-image-amd64":                 aptDependsOutput,
				"apt-cache policy linux-image-6.1.0-57-amd64":         aptPolicyOutput,
				"apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3": "Package: x\nVersion: 6.1.192-3\n",
			},
			wantErr: "apt gives no SHA256",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			apt := &fakeApt{answers: tc.answers, onCall: downloaded}
			dir := filepath.Join(t.TempDir(), "cache")
			got, err := aptFetcher{run: apt.run, release: release}.fetch(context.Background(), dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != filepath.Join(dir, tc.want) {
				t.Fatalf("got %s, want %s in %s", got, tc.want, dir)
			}
			for _, c := range tc.calls {
				if !slices.Contains(apt.calls, c) {
					t.Errorf("missing call %q in %q", c, apt.calls)
				}
			}
		})
	}
}

// A cached package is reused only when apt's index gives its SHA-256; a tampered one, a link,
// or a cache others may write to is refused, naming the file and the fix.
func TestFetchDebianKernelReusesCache(t *testing.T) {
	const name = "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string // "" when the cached file is reused
	}{
		{name: "intact", setup: func(t *testing.T, dir string) { writeFile(t, dir, name, []byte("deb"), 0o644) }},
		{name: "tampered", setup: func(t *testing.T, dir string) { writeFile(t, dir, name, []byte("evil deb"), 0o644) },
			wantErr: "is not linux-image-6.1.0-57-amd64 6.1.192-3 as apt knows it"},
		{name: "a link to an intact package", setup: func(t *testing.T, dir string) {
			real := writeFile(t, t.TempDir(), "real.deb", []byte("deb"), 0o644)
			if err := os.Symlink(real, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "symbolic link"},
		{name: "cache writable by others", setup: func(t *testing.T, dir string) {
			writeFile(t, dir, name, []byte("deb"), 0o644)
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "chmod go-w"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			cached := filepath.Join(dir, name)
			apt := &fakeApt{answers: map[string]string{
				"apt-cache depends linux-image-amd64":                 aptDependsOutput,
				"apt-cache policy linux-image-6.1.0-57-amd64":         aptPolicyOutput,
				"apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3": aptShowOutput("linux-image-6.1.0-57-amd64", "6.1.192-3", debSHA256),
			}}
			got, err := aptFetcher{run: apt.run, release: unameRelease}.fetch(context.Background(), dir)
			for _, c := range apt.calls {
				if strings.HasPrefix(c, "apt-get") {
					t.Errorf("downloaded although cached: %q", c)
				}
			}
			if tc.wantErr == "" {
				if err != nil || got != cached {
					t.Fatalf("got %s, %v; want the cached %s", got, err, cached)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %s, %v; want an error with %q", got, err, tc.wantErr)
			}
			if tc.name == "tampered" && (!strings.Contains(err.Error(), cached) || !strings.Contains(err.Error(), "delete "+cached)) {
				t.Errorf("the error does not name %s and the fix: %v", cached, err)
			}
		})
	}
}

func TestShowSHA256(t *testing.T) {
	out := aptShowOutput("p", "6.1.192-3", debSHA256) + aptShowOutput("p", "6.1.192-3", debSHA256)
	if got := showSHA256([]byte(out), "6.1.192-3"); len(got) != 1 || got[0] != debSHA256 {
		t.Errorf("showSHA256 = %q, want [%s]", got, debSHA256)
	}
	if got := showSHA256([]byte(out), "9.9"); got != nil {
		t.Errorf("showSHA256 of another version = %q", got)
	}
}

func TestValidDebianVersion(t *testing.T) {
	for _, ok := range []string{"6.1.192-3", "1:2.0~rc1+b2-3"} {
		if !validDebianVersion(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "-1", "1.0;ls", "1.0 2", "../1"} {
		if validDebianVersion(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
