// Package upstream extracts a Kata Containers static release tarball (kata-static-<version>-
// <arch>.tar.xz or .tar.zst, and the kata-go-static-… name of 4.1 and later) the way upstream
// expects it, at /opt/kata, with every entry validated before anything is written outside a
// staging directory: relative paths under opt/kata/ only, no "..", only regular files,
// directories and symlinks (no hard links, devices or FIFOs), no symlink that resolves outside the
// release, no entry through a symlink, bounded sizes and counts. The tarball is untrusted input
// even when it came from the project's release page.
package upstream

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// Root is the directory of the release inside the tarball, and where upstream expects it.
const Root = "opt/kata"

// DefaultDir is where the release is extracted: its configuration names paths under it.
const DefaultDir = "/" + Root

// Paths inside the release the installer registers.
const (
	ShimPath   = "bin/containerd-shim-kata-v2"
	ConfigPath = "share/defaults/kata-containers/configuration-qemu.toml"
)

// Release is what a tarball's name says.
type Release struct {
	// Go is true for kata-go-static (4.1 and later: the Go runtime's tarball).
	Go      bool
	Version string
	Arch    string
	// Compression is "xz" or "zst".
	Compression string
}

var namePattern = regexp.MustCompile(`^kata-(go-)?static-(.+)-(amd64|x86_64|arm64|aarch64|s390x|ppc64le)\.tar\.(xz|zst)$`)

// ParseName reads a release tarball's file name.
func ParseName(path string) (Release, error) {
	m := namePattern.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return Release{}, fmt.Errorf("%s is not named like a Kata Containers release (kata-static-<version>-<arch>.tar.xz or .tar.zst, or kata-go-static-…): pass the file as downloaded from the release page", filepath.Base(path))
	}
	return Release{Go: m[1] != "", Version: m[2], Arch: m[3], Compression: m[4]}, nil
}

// HostArch is this machine's architecture as release names spell it.
func HostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "amd64"
	case "arm64":
		return "arm64"
	}
	return runtime.GOARCH
}

// CheckArch refuses a release built for another architecture.
func (r Release) CheckArch(host string) error {
	arch := strings.NewReplacer("x86_64", "amd64", "aarch64", "arm64").Replace(r.Arch)
	if arch != host {
		return fmt.Errorf("the release is for %s, this host is %s: download the %s tarball", r.Arch, host, host)
	}
	return nil
}
