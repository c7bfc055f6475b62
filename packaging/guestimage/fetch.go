package guestimage

import (
	"github.com/kata-deploy/kata-deploy/internal/pathtrust"

	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// debianKernelMeta is the metapackage that always depends on the current
// generic kernel of the release.
const debianKernelMeta = "linux-image-amd64"

// runFunc runs a command with an argument list (never a shell) in dir and
// returns its combined output.
type runFunc func(ctx context.Context, dir, name string, args ...string) ([]byte, error)

// FetchDebianKernel downloads the generic Debian kernel package into
// destDir with `apt-get download` and returns the .deb's path. It picks the
// package linux-image-amd64 depends on, or else the package of the running
// kernel if apt knows it. A package already present in destDir is reused when its
// SHA-256 is the one apt's indexes give (apt-cache show); a download is checked the same way.
func FetchDebianKernel(ctx context.Context, destDir string) (string, error) {
	return aptFetcher{run: execRun, release: unameRelease}.fetch(ctx, destDir)
}

type aptFetcher struct {
	run     runFunc
	release func() (string, error)
}

func (a aptFetcher) fetch(ctx context.Context, destDir string) (string, error) {
	if runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("guest kernels are built for x86-64 only, this host is %s", runtime.GOARCH)
	}
	pkg, err := a.pickPackage(ctx)
	if err != nil {
		return "", err
	}
	version, err := a.candidateVersion(ctx, pkg)
	if err != nil {
		return "", err
	}
	sums, err := a.aptSHA256(ctx, pkg, version)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(destDir, 0o755); err != nil {
		return "", fmt.Errorf("create kernel cache directory: %w", err)
	}
	if err := checkCacheDir(destDir); err != nil {
		return "", err
	}
	// apt-get download names the file <pkg>_<version>_<arch>.deb with the
	// epoch's ':' escaped as %3a.
	want := filepath.Join(destDir, fmt.Sprintf("%s_%s_amd64.deb", pkg, strings.ReplaceAll(version, ":", "%3a")))
	if _, err := os.Lstat(want); err == nil {
		// Reused only when it is what apt would download now: the name proves nothing.
		if err := verifyDeb(want, pkg, version, sums); err != nil {
			return "", fmt.Errorf("%w; delete %s and run again to download it afresh, or pass a kernel package explicitly", err, want)
		}
		return want, nil
	}
	if out, err := a.run(ctx, destDir, "apt-get", "download", pkg+"="+version); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s failed: %w (%s): check the apt sources and network, or pass a kernel package explicitly", pkg, version, err, lastLine(out))
	}
	if _, err := os.Lstat(want); err != nil {
		return "", fmt.Errorf("apt-get download reported success but %s is missing: %w", want, err)
	}
	if err := verifyDeb(want, pkg, version, sums); err != nil {
		_ = os.Remove(want) // never reused: the next run downloads afresh
		return "", fmt.Errorf("%w: the download is refused and removed; run again, or pass a kernel package explicitly", err)
	}
	return want, nil
}

// aptSHA256 returns the SHA-256 sums apt's package indexes give pkg at version (the SHA256
// field of apt-cache show; one per index that lists it).
func (a aptFetcher) aptSHA256(ctx context.Context, pkg, version string) ([]string, error) {
	out, err := a.run(ctx, "", "apt-cache", "show", pkg+"="+version)
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s=%s: %w (%s): run apt-get update", pkg, version, err, lastLine(out))
	}
	sums := showSHA256(out, version)
	if len(sums) == 0 {
		return nil, fmt.Errorf("apt gives no SHA256 for %s %s, so a download could not be verified: run apt-get update", pkg, version)
	}
	return sums, nil
}

// showSHA256 collects the SHA256 fields of the records of version in apt-cache show's output.
func showSHA256(out []byte, version string) []string {
	var sums []string
	var recVersion, recSum string
	flush := func() {
		if recVersion == version && len(recSum) == 64 && !slices.Contains(sums, recSum) {
			sums = append(sums, recSum)
		}
		recVersion, recSum = "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024) // long Description lines
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "Version:"):
			recVersion = strings.TrimSpace(strings.TrimPrefix(line, "Version:"))
		case strings.HasPrefix(line, "SHA256:"):
			recSum = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(line, "SHA256:")))
		}
	}
	flush()
	return sums
}

// verifyDeb checks that path is a regular file (not a link) whose SHA-256 is one apt gives.
func verifyDeb(path, pkg, version string, sums []string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if !slices.Contains(sums, got) {
		return fmt.Errorf("%s is not %s %s as apt knows it (sha256 %s, apt's %s): it was changed or damaged", path, pkg, version, got, strings.Join(sums, " or "))
	}
	return nil
}

// checkCacheDir refuses a kernel cache that someone else could change, the directory or any
// above it (pathtrust's rule): its files are built into the guest image root installs.
func checkCacheDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the kernel cache %s is not a directory (a symbolic link?): remove it, or pass another cache directory", dir)
	}
	if err := pathtrust.Check(dir, pathtrust.Owners()); err != nil {
		return fmt.Errorf("the kernel cache: %w", err)
	}
	return nil
}

// pickPackage chooses linux-image-amd64's dependency, falling back to the
// running kernel's package.
func (a aptFetcher) pickPackage(ctx context.Context) (string, error) {
	out, err := a.run(ctx, "", "apt-cache", "depends", debianKernelMeta)
	if err == nil {
		if pkg := kernelDependency(out); pkg != "" {
			return checkKernelPackage(pkg)
		}
	}
	rel, rerr := a.release()
	if rerr != nil {
		return "", fmt.Errorf("apt knows no %s (%v) and the running kernel is unknown: %w", debianKernelMeta, err, rerr)
	}
	pkg := "linux-image-" + rel
	if _, cerr := a.candidateVersion(ctx, pkg); cerr != nil {
		return "", fmt.Errorf("apt knows neither %s nor %s: run apt-get update, or pass a kernel package explicitly", debianKernelMeta, pkg)
	}
	return checkKernelPackage(pkg)
}

// kernelDependency finds "Depends: linux-image-<version>-..." in the
// output of apt-cache depends.
func kernelDependency(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			rest := strings.TrimPrefix(f[1], "linux-image-")
			if rest != "" && rest[0] >= '0' && rest[0] <= '9' {
				return f[1]
			}
		}
	}
	return ""
}

// checkKernelPackage refuses names apt could misread and kernels that
// cannot serve as a guest.
func checkKernelPackage(pkg string) (string, error) {
	if !validDebianName(pkg) {
		return "", fmt.Errorf("refusing odd kernel package name %q", pkg)
	}
	if strings.Contains(pkg, "-cloud-") || strings.HasSuffix(pkg, "-cloud") {
		return "", fmt.Errorf("%s is a -cloud kernel, which has no 9p support: install or pass the generic linux-image-amd64 kernel", pkg)
	}
	return pkg, nil
}

// validDebianName follows Debian policy 5.6.1: lowercase letters, digits,
// '+', '-', '.'; at least two characters; starting alphanumeric (so never
// an option to apt).
func validDebianName(s string) bool {
	if len(s) < 2 || !isLowerAlnum(rune(s[0])) {
		return false
	}
	for _, c := range s {
		if !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c rune) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// candidateVersion asks apt which version of pkg it would install.
func (a aptFetcher) candidateVersion(ctx context.Context, pkg string) (string, error) {
	out, err := a.run(ctx, "", "apt-cache", "policy", pkg)
	if err != nil {
		return "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	v := candidateFromPolicy(out)
	if v == "" {
		return "", fmt.Errorf("apt has no installable candidate for %s: run apt-get update", pkg)
	}
	if !validDebianVersion(v) {
		return "", fmt.Errorf("apt reported an odd version %q for %s", v, pkg)
	}
	return v, nil
}

func candidateFromPolicy(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return ""
			}
			return v
		}
	}
	return ""
}

func validDebianVersion(v string) bool {
	if v == "" || !(v[0] >= '0' && v[0] <= '9') {
		return false
	}
	for _, c := range v {
		ok := isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || strings.ContainsRune(".+-~:", c)
		if !ok {
			return false
		}
	}
	return true
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// execRun runs name with args in dir; LC_ALL=C keeps apt's output parseable
// (apt's warnings, on stderr, do not disturb the line-based parsers).
func execRun(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return out.Bytes(), fmt.Errorf("%s not found: this needs a Debian-based host with apt", name)
	}
	return out.Bytes(), err
}

func unameRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
