package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// sysBlock lists the guest's block devices.
const sysBlock = "/sys/block"

// blockShareTimeout bounds the wait for a disk's probe right after boot.
const blockShareTimeout = 10 * time.Second

// findBlockBySerial returns the /dev path of the virtio disk whose serial is serial.
func findBlockBySerial(sysDir, serial string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", os.ErrNotExist
}

// mountBlockShare mounts the file system of the disk whose serial is s.Tag at s.GuestPath:
// nodev and nosuid like any share, read-only when asked.
func (e *NSExecutor) mountBlockShare(ctx context.Context, s agentproto.Share) error {
	if err := os.MkdirAll(s.GuestPath, 0o755); err != nil {
		return fmt.Errorf("create block mount point %s: %w", s.GuestPath, err)
	}
	flags := uintptr(unix.MS_NODEV | unix.MS_NOSUID)
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	deadline := time.Now().Add(blockShareTimeout)
	for {
		dev, err := findBlockBySerial(sysBlock, s.Tag)
		if err == nil {
			err = unix.Mount(dev, s.GuestPath, s.FSType, flags, "")
		}
		if err == nil {
			break
		}
		retry := errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO)
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("mount the %s disk %q at %s: %w (is the %s module in the guest image?)", s.FSType, s.Tag, s.GuestPath, err, s.FSType)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.mu.Lock()
	e.mounted = append(e.mounted, s.GuestPath)
	e.blocks = append(e.blocks, s.GuestPath)
	e.mountChanges++
	e.mu.Unlock()
	e.log.Debugf("mounted %s disk %q at %s", s.FSType, s.Tag, s.GuestPath)
	return nil
}

// unmountBlocks unmounts the disks' file systems for real before the power-off, so they are
// clean when the host checks them; a busy one is left to the lazy unmount that follows.
func (e *NSExecutor) unmountBlocks() {
	e.mu.Lock()
	blocks := e.blocks
	e.blocks = nil
	e.mu.Unlock()
	for _, p := range blocks {
		if err := unix.Unmount(p, 0); err != nil {
			e.log.Errorf("unmount disk at %s: %v", p, err)
			continue
		}
		e.mu.Lock()
		e.mounted = slices.DeleteFunc(e.mounted, func(m string) bool { return m == p })
		e.mountChanges++
		e.mu.Unlock()
	}
}
