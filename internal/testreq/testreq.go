// Package testreq is the one place where a test says what its environment must provide.
//
// A test that cannot run here (no root, no QEMU, no kernel package, no test engine, a missing
// tool) skips with the reason; with KATA_E2E_REQUIRED=1 (set by `make test` and CI) it fails
// instead, so a CI run cannot pass by skipping. A skip that is a choice rather than a gap
// (`-short`) uses Short, which never fails.
package testreq

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequiredEnv is the environment variable that turns skips into failures.
const RequiredEnv = "KATA_E2E_REQUIRED"

// T is the part of testing.TB the helpers use.
type T interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Required reports whether missing prerequisites are failures.
func Required() bool { return os.Getenv(RequiredEnv) == "1" }

// Skipf skips the test with the reason, or fails it under KATA_E2E_REQUIRED=1.
func Skipf(t T, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("prerequisite missing (%s=1): %s", RequiredEnv, why)
		return
	}
	t.Skipf("SKIPPED, prerequisite missing: %s", why)
}

// Short skips the test under -short: a choice of the caller, not a gap of the machine, so it
// never fails.
func Short(t T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("SKIPPED in -short mode: %s", what)
	}
}

// Root requires the effective user to be root.
func Root(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root")
	}
}

// Command requires an executable on PATH and returns its path; pkg names the Debian package
// that provides it when that differs from the command.
func Command(t T, name string, pkg ...string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "%s is not installed (apt-get install %s)", name, packageOf(name, pkg))
	}
	return p
}

// Commands requires several executables on PATH.
func Commands(t T, names ...string) {
	t.Helper()
	for _, n := range names {
		Command(t, n)
	}
}

// packages maps commands to the Debian packages that ship them.
var packages = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"qemu-img":           "qemu-utils",
	"mkfs.ext4":          "e2fsprogs",
	"mkfs.xfs":           "xfsprogs",
	"mkfs.btrfs":         "btrfs-progs",
	"mkfs.vfat":          "dosfstools",
	"xz":                 "xz-utils",
	"ip":                 "iproute2",
	"diff":               "diffutils",
	"modinfo":            "kmod",
	"dpkg-deb":           "dpkg",
	"busybox":            "busybox-static",
	"sh":                 "dash",
}

func packageOf(name string, given []string) string {
	if len(given) > 0 {
		return strings.Join(given, " ")
	}
	if p, ok := packages[name]; ok {
		return p
	}
	return name
}

// File requires a file to exist; hint says how to get it.
func File(t T, path, hint string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skipf(t, "%s is missing (%s)", path, hint)
	}
}

// Tun requires /dev/net/tun, which taps are made from.
func Tun(t T) {
	t.Helper()
	File(t, "/dev/net/tun", "modprobe tun")
}

// QEMUBinary is the emulator the VM tests boot.
const QEMUBinary = "qemu-system-x86_64"

// QbootROM is the firmware the VM tests boot with (Debian's qemu-system-x86 ships it).
const QbootROM = "/usr/share/qemu/qboot.rom"

// QEMU requires qemu-system-x86_64 and qboot and returns QEMU's path.
func QEMU(t T) string {
	t.Helper()
	p := Command(t, QEMUBinary)
	File(t, QbootROM, "apt-get install qemu-system-x86")
	return p
}

// Engine requires the test engine's environment (hack/engine.sh up, then source its env file).
func Engine(t T) {
	t.Helper()
	if os.Getenv("KATA_TEST_ENGINE") == "" || os.Getenv("DOCKER_HOST") == "" {
		Skipf(t, "the test engine is not up: run `hack/engine.sh up` and source the env file it prints")
	}
}
