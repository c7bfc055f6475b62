package hostinfo

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxSmallFile bounds what is read from small metadata files (os-release, VERSION, manifest.json),
// so that a wrong path pointing at something huge cannot exhaust memory.
const maxSmallFile = 1 << 20

// readInRoot reads name (relative to root) without following symlinks out of root: with root
// "/host" an absolute link must not resolve to the container's own files.
func readInRoot(root, name string) ([]byte, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSmallFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a metadata file", name, maxSmallFile)
	}
	return data, nil
}

// statInRoot is os.Stat for name inside root, confined like readInRoot.
func statInRoot(root, name string) (fs.FileInfo, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Stat(name)
}
