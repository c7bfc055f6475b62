package distro

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// SumsName is the checksum file of a release folder.
const SumsName = "SHA256SUMS"

// WriteSums writes dir/SHA256SUMS over every regular file in dir (sha256sum's format, in name
// order, hidden files and SHA256SUMS itself left out), so `sha256sum -c SHA256SUMS` checks them.
func WriteSums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var lines []string
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == SumsName || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+e.Name()+"\n")
	}
	if len(lines) == 0 {
		return fmt.Errorf("%s holds no file to sum", dir)
	}
	return os.WriteFile(filepath.Join(dir, SumsName), []byte(strings.Join(lines, "")), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
