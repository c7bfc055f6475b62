package containerinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinks bounds symlink resolution like the kernel's ELOOP limit.
const maxSymlinks = 255

// secureJoin resolves unsafePath as if root were "/": symlinks in it, and
// "..", never lead outside root. Missing components are kept as they are
// (they will be created as directories). A container image controls its
// symlinks, so mount destinations must be resolved this way.
func secureJoin(root, unsafePath string) (string, error) {
	root = filepath.Clean(root)
	resolved := "" // "" or "/a/b": a clean path relative to root
	rest := unsafePath
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = parent(resolved)
			continue
		}
		next := resolved + "/" + part
		fi, err := os.Lstat(root + next)
		if errors.Is(err, fs.ErrNotExist) {
			resolved = next
			continue
		}
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, unix.ELOOP)
		}
		target, err := os.Readlink(root + next)
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, err)
		}
		if path.IsAbs(target) {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	if resolved == "" {
		return root, nil
	}
	if root == "/" {
		return resolved, nil
	}
	return root + resolved, nil
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return ""
	}
	return p[:i]
}
