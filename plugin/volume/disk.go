package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Disk is what the driver does to image files and the host's mounts; tests replace it.
type Disk interface {
	// Create makes a sparse image of size bytes at path with file system fs.
	Create(ctx context.Context, path string, size int64, fs string) error
	// Check runs a read-only file system check and fails when the file system is not clean.
	Check(ctx context.Context, path, fs string) error
	// Mount loop-mounts the image at dir (nosuid, nodev).
	Mount(ctx context.Context, path, fs, dir string) error
	// Unmount unmounts dir; not mounted is fine.
	Unmount(dir string) error
	// Mounted reports whether something is mounted at dir.
	Mounted(dir string) (bool, error)
}

// HostDisk is Disk with mkfs, fsck and mount(8) on the host.
type HostDisk struct{}

const toolTimeout = 10 * time.Minute

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs a tool and returns its combined output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// fsck of an image a VM wrote prints what the guest made of it: keep a bounded head.
	out := &cappedBuffer{max: maxToolOutput}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("%s is not installed: install e2fsprogs (ext4) or xfsprogs (xfs): %w", name, err)
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out.String()))
	}
	return out.String(), nil
}

// maxToolOutput is how much of a tool's output is kept (errors quote its tail, the xfs check
// looks for one sentence near the start).
const maxToolOutput = 1 << 20

// cappedBuffer keeps the first max bytes written and drops the rest, never failing the writer.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string { return c.buf.String() }

// exitCode is the exit status of a command that ran, else -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

func (HostDisk) Create(ctx context.Context, path string, size int64, fs string) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	switch fs {
	case "ext4":
		return run(ctx, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", path)
	case "xfs":
		return run(ctx, "mkfs.xfs", "-q", "-f", path)
	}
	return fmt.Errorf("file system %q is not supported", fs)
}

func (HostDisk) Check(ctx context.Context, path, fs string) error {
	switch fs {
	case "ext4":
		// A journal left by a VM that stopped uncleanly is replayed here, in user space: the
		// read-only check skips it, and the host kernel would otherwise replay it at mount.
		// Exit status 1 means the journal was replayed.
		if err := run(ctx, "e2fsck", "-E", "journal_only", "-p", path); err != nil && exitCode(err) != 1 {
			return err
		}
		// -n: open read-only, answer no to everything; -f: check even when marked clean.
		return run(ctx, "e2fsck", "-n", "-f", path)
	case "xfs":
		out, err := output(ctx, "xfs_repair", "-n", "-f", path)
		if err != nil {
			return err
		}
		// With -n a dirty log is only reported; the host kernel would replay it at mount.
		if strings.Contains(out, "metadata changes in a log") {
			return fmt.Errorf("the xfs log needs replaying, which only the kernel does: run xfs_repair -L on the image (losing the log) or use the volume from a VM only after repairing it: %s", tail(out))
		}
		return nil
	}
	return fmt.Errorf("file system %q is not supported", fs)
}

func (HostDisk) Mount(ctx context.Context, path, fs, dir string) error {
	return run(ctx, "mount", "-t", fs, "-o", "loop,nosuid,nodev", "--", path, dir)
}

func (HostDisk) Unmount(dir string) error {
	err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

func (HostDisk) Mounted(dir string) (bool, error) {
	return mountinfo.Mounted(dir)
}
