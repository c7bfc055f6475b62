package install

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// fileSum returns the hex SHA-256 and size of the file at path; ("", 0, nil) when it is absent.
func fileSum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func bytesSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeAtomic puts data (or the content of the file src, when data is nil) at path with mode:
// a synced temporary file in the same directory renamed over path, then the directory synced.
// The written content must hash to wantSHA, so a source that changed since it was planned is
// caught before it replaces anything.
func writeAtomic(path string, data []byte, src string, mode fs.FileMode, wantSHA string) error {
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(mode))
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer pf.Cleanup() //nolint:errcheck // no-op after success
	h := sha256.New()
	w := io.MultiWriter(pf, h)
	if data != nil {
		_, err = w.Write(data)
	} else {
		err = copyFrom(w, src)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA {
		return fmt.Errorf("writing %s: %s changed while installing (sha256 %s, planned %s): run install again", path, src, got, wantSHA)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func copyFrom(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// renameSynced moves a file within one file system and makes the rename durable.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(to)); err != nil {
		return err
	}
	if filepath.Dir(from) != filepath.Dir(to) {
		return syncDir(filepath.Dir(from))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// isEmptyDir reports whether dir exists and has no entries.
func isEmptyDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}
