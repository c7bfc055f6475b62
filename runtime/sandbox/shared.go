package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// sharedDir is the host directory shared into the guest: the container's rootfs and every bind
// mount source are bind-mounted under it, so one virtio-9p/virtio-fs device carries them all, live
// (a bind mount shows Docker's later rewrites of /etc/hosts, not a copy).
type sharedDir struct {
	path   string
	mounts []string // host mount points we created, in creation order
}

// share bind-mounts spec's rootfs and bind mounts under dir and returns a copy of the spec rewritten
// to guest paths. On error everything it mounted is undone.
func share(dir string, spec *specs.Spec) (_ *sharedDir, _ *specs.Spec, err error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, nil, errors.New("the OCI spec has no root.path: the container has no rootfs to share")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating the shared directory: %w", err)
	}
	s := &sharedDir{path: dir}
	defer func() {
		if err != nil {
			s.unshare()
		}
	}()
	guest := *spec
	root := *spec.Root
	guest.Root = &root
	if root.Path, err = s.bind(spec.Root.Path, "rootfs", false); err != nil {
		return nil, nil, err
	}
	guest.Mounts = slices.Clone(spec.Mounts)
	for i, m := range guest.Mounts {
		if !isBind(m) {
			continue
		}
		name := "m" + strconv.Itoa(i)
		if guest.Mounts[i].Source, err = s.bind(m.Source, name, slices.Contains(m.Options, "rbind")); err != nil {
			return nil, nil, fmt.Errorf("sharing bind mount %s -> %s: %w", m.Source, m.Destination, err)
		}
	}
	return s, &guest, nil
}

// bind mounts source at dir/name and returns the guest path of it.
func (s *sharedDir) bind(source, name string, recursive bool) (string, error) {
	st, err := os.Stat(source)
	if err != nil {
		return "", err
	}
	target := filepath.Join(s.path, name)
	if st.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return "", err
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(source, target, "", flags, ""); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("bind-mounting %s: %w", source, err)
	}
	s.mounts = append(s.mounts, target)
	// Private: nothing mounted later under the source propagates into the guest's view, and our
	// mount does not propagate back to the host's other namespaces.
	_ = unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, "")
	return filepath.Join(agentproto.SharedGuestDir, name), nil
}

// unshare undoes every bind mount and removes the directory. It is safe to call twice.
func (s *sharedDir) unshare() error {
	var errs []error
	for i := len(s.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(s.mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", s.mounts[i], err))
		}
	}
	s.mounts = nil
	if err := removeShallow(s.path); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeShallow removes dir and its direct entries with os.Remove, never recursively: should a bind
// mount still be in place, the removal fails (EBUSY, ENOTEMPTY) instead of deleting the user's data
// through it.
func removeShallow(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unshareLeftovers cleans a shared directory found after a crash: every mount point under it is
// detached, then it is removed.
func unshareLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	s := &sharedDir{path: dir}
	for _, e := range entries {
		s.mounts = append(s.mounts, filepath.Join(dir, e.Name()))
	}
	return s.unshare()
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}
