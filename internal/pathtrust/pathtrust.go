// Package pathtrust decides whether a path that root will execute from, or write to, can be
// changed by anyone else.
//
// The rule: resolving the path from / (following every symbolic link, as the kernel does), each
// directory passed through, each symbolic link met, and the path itself must be owned by a
// trusted user (root, or the user running kata-deploy), and none may be writable by group or
// others. One exception: a directory that is not the last component may be group- or
// other-writable when it has the sticky bit (/tmp, 1777): there nobody but an entry's owner
// (and the directory's owner, checked trusted too) can rename or remove the entry, and the next
// component is checked to be trusted-owned, so an entry the user made beforehand is refused. The
// last component never gets the exception: a prefix of /tmp itself would let anyone make its
// subdirectories first. ACLs are not read; the mode bits are what is checked.
//
// A path that does not exist yet is checked up to its deepest existing ancestor: what is created
// below it is created by the caller. The caller checks again once it has created it.
package pathtrust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// maxLinks bounds the symbolic links followed, as the kernel does (ELOOP after 40).
const maxLinks = 40

// Error says which component of a path is not trusted, and how to fix it.
type Error struct {
	Path   string // the path checked
	Entry  string // the directory, link or file at fault
	Reason string // e.g. "owned by uid 1000", "writable by others (mode 0777)"
	Fix    string // a command that fixes it
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s is not safe: %s is %s, so someone other than root could change what is run from there", e.Path, e.Entry, e.Reason)
	if e.Entry == e.Path {
		msg = fmt.Sprintf("%s is not safe: it is %s, so someone other than root could change what is run from there", e.Path, e.Reason)
	}
	return msg + "; fix: " + e.Fix
}

// Owners are the users trusted to own what root runs: root, and the user running this process
// when that is not root (whose own files it runs anyway).
func Owners() []int {
	if euid := os.Geteuid(); euid != 0 {
		return []int{0, euid}
	}
	return []int{0}
}

// Check checks path (absolute) under the package's rule, trusting the given owners. It returns
// an *Error for an untrusted component, another error when the path cannot be examined.
func Check(path string, owners []int) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s is not an absolute path", path)
	}
	root, err := os.Lstat("/")
	if err != nil {
		return err
	}
	if err := checkEntry(path, "/", root, false, owners); err != nil {
		return err
	}
	cur := "/"
	pending := split(path)
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // an ancestor: already checked
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created below cur, which is trusted, by the caller
		}
		if err != nil {
			return fmt.Errorf("checking %s: %w", next, err)
		}
		last := len(pending) == 0
		if err := checkEntry(path, next, fi, last, owners); err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxLinks {
				return fmt.Errorf("checking %s: too many levels of symbolic links", path)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("checking %s: %w", next, err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			pending = append(split(target), pending...)
		case fi.IsDir():
			cur = next
		case !last:
			return fmt.Errorf("checking %s: %s is not a directory", path, next)
		}
	}
	return nil
}

func split(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// checkEntry applies the rule to one component.
func checkEntry(path, entry string, fi fs.FileInfo, last bool, owners []int) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("checking %s: no owner information", entry)
	}
	uid := int(st.Uid)
	if !slices.Contains(owners, uid) {
		return &Error{Path: path, Entry: entry, Reason: fmt.Sprintf("owned by uid %d", uid),
			Fix: fmt.Sprintf("chown root:root %s (or choose a path owned by root)", entry)}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil // a link's own mode means nothing; its directory decides who may replace it
	}
	perm := fi.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	if fi.IsDir() && !last && fi.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	who := "others"
	if perm&0o002 == 0 {
		who = "its group"
	}
	reason := fmt.Sprintf("writable by %s (mode %04o)", who, perm)
	if fi.IsDir() && fi.Mode()&fs.ModeSticky != 0 {
		reason += ", and the sticky bit does not protect the directory itself"
	}
	return &Error{Path: path, Entry: entry, Reason: reason, Fix: "chmod go-w " + entry}
}
