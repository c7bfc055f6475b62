// Command kata-packages builds kata-deploy's .deb and .rpm from the binaries `make build` made
// (`make packages`); for `make release`, -image-kernel writes the installer image archive and -sums
// the release folder's SHA256SUMS.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kata-deploy/kata-deploy/cmd/kata-deploy/commands"
	"github.com/kata-deploy/kata-deploy/packaging/distro"
	"github.com/kata-deploy/kata-deploy/packaging/ociarchive"
)

func main() {
	o := distro.Options{Root: commands.Root}
	var describe, epoch, revision, kernel string
	var sumsOnly bool
	flag.StringVar(&o.BinDir, "bin", "bin", "directory with the built binaries")
	flag.StringVar(&o.Config, "config", "configs/configuration-qemu.toml", "the default configuration")
	flag.StringVar(&o.License, "license", "LICENSE", "the license text")
	flag.StringVar(&o.OutDir, "out", "dist", "where the packages go")
	flag.StringVar(&describe, "version", "", "git describe --tags --always --dirty, or a version such as 1.2.3")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the commit's time in seconds since 1970 (file times, build time)")
	flag.BoolVar(&sumsOnly, "sums", false, "only write SHA256SUMS over the files in -out")
	flag.StringVar(&kernel, "image-kernel", "", "only write the installer image archive, with this guest kernel package (linux-image-*.deb) and the static binaries in -bin")
	flag.StringVar(&revision, "revision", "", "the commit, for the image's org.opencontainers.image.revision label")
	flag.Parse()
	var err error
	if kernel != "" {
		err = image(o.BinDir, o.OutDir, kernel, describe, revision, epoch)
	} else {
		err = run(o, describe, epoch, sumsOnly)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kata-packages:", err)
		os.Exit(1)
	}
}

func run(o distro.Options, describe, epoch string, sumsOnly bool) error {
	if sumsOnly {
		return distro.WriteSums(o.OutDir)
	}
	var err error
	if o.MTime, err = sourceDate(epoch); err != nil {
		return err
	}
	if o.Version, err = distro.PackageVersion(describe, o.MTime); err != nil {
		return err
	}
	paths, err := distro.Build(o)
	for _, p := range paths {
		fmt.Println(p)
	}
	return err
}

// image writes the installer image archive, tagged kata-deploy:<git describe> as `make image` is.
func image(binDir, outDir, kernel, describe, revision, epoch string) error {
	created, err := sourceDate(epoch)
	if err != nil {
		return err
	}
	files, err := ociarchive.InstallerFiles(binDir, kernel)
	if err != nil {
		return err
	}
	o := ociarchive.Options{Repository: "kata-deploy", Tag: describe, Revision: revision, Created: created, Files: files}
	path, err := ociarchive.WriteFile(outDir, o)
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

func sourceDate(epoch string) (time.Time, error) {
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, fmt.Errorf("-source-date-epoch (or SOURCE_DATE_EPOCH) must be the commit's time in seconds (git log -1 --format=%%ct), not %q", epoch)
	}
	return time.Unix(secs, 0).UTC(), nil
}
