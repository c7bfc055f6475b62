package ociarchive

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// kernelRe is a Debian guest kernel package, as install fetches it.
var kernelRe = regexp.MustCompile(`^linux-image-[0-9][A-Za-z0-9.+~_-]*_amd64\.deb$`)

// InstallerBinaries are the executables the installer image carries in Dir.
var InstallerBinaries = []string{"kata-deploy", layout.ShimName, layout.AgentName, pluginsvc.BinaryName}

// InstallerFiles are the installer image's files, as the Dockerfile's build context holds them:
// the static kata-deploy, shim, agent and kata-plugins (install --with-plugins copies it into the
// host) from binDir and the guest kernel package kernelDeb.
func InstallerFiles(binDir, kernelDeb string) ([]File, error) {
	if !kernelRe.MatchString(filepath.Base(kernelDeb)) {
		return nil, fmt.Errorf("guest kernel %q is not a linux-image-*_amd64.deb package", kernelDeb)
	}
	files := []File{{Name: filepath.Base(kernelDeb), Source: kernelDeb, Mode: 0o644}}
	for _, name := range InstallerBinaries {
		files = append(files, File{Name: name, Source: filepath.Join(binDir, name), Mode: 0o755})
	}
	return files, nil
}

// ArchiveName is the archive's file name in a release folder.
func (o Options) ArchiveName() string {
	return o.Repository + "-image_" + o.Tag + "_amd64.oci.tar"
}

// WriteFile writes the archive into dir under ArchiveName, through a temporary file so a failed
// run leaves nothing (nor half an archive) behind, and returns its path.
func WriteFile(dir string, o Options) (string, error) {
	if err := o.validate(); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".image-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := writeClose(tmp, o); err != nil {
		return "", fmt.Errorf("writing the image archive: %w", err)
	}
	path := filepath.Join(dir, o.ArchiveName())
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

func writeClose(f *os.File, o Options) error {
	err := Write(f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
