// Command kata-packages builds kata-deploy's .deb and .rpm from the binaries `make build` made
// (`make packages`), and with -sums writes a release folder's SHA256SUMS (`make release`).
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kata-deploy/kata-deploy/cmd/kata-deploy/commands"
	"github.com/kata-deploy/kata-deploy/packaging/distro"
)

func main() {
	o := distro.Options{Root: commands.Root}
	var describe, epoch string
	var sumsOnly bool
	flag.StringVar(&o.BinDir, "bin", "bin", "directory with the built binaries")
	flag.StringVar(&o.Config, "config", "configs/configuration-qemu.toml", "the default configuration")
	flag.StringVar(&o.License, "license", "LICENSE", "the license text")
	flag.StringVar(&o.OutDir, "out", "dist", "where the packages go")
	flag.StringVar(&describe, "version", "", "git describe --tags --always --dirty, or a version such as 1.2.3")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the commit's time in seconds since 1970 (file times, build time)")
	flag.BoolVar(&sumsOnly, "sums", false, "only write SHA256SUMS over the files in -out")
	flag.Parse()
	if err := run(o, describe, epoch, sumsOnly); err != nil {
		fmt.Fprintln(os.Stderr, "kata-packages:", err)
		os.Exit(1)
	}
}

func run(o distro.Options, describe, epoch string, sumsOnly bool) error {
	if sumsOnly {
		return distro.WriteSums(o.OutDir)
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || secs <= 0 {
		return fmt.Errorf("-source-date-epoch (or SOURCE_DATE_EPOCH) must be the commit's time in seconds (git log -1 --format=%%ct), not %q", epoch)
	}
	o.MTime = time.Unix(secs, 0).UTC()
	if o.Version, err = distro.PackageVersion(describe, o.MTime); err != nil {
		return err
	}
	paths, err := distro.Build(o)
	for _, p := range paths {
		fmt.Println(p)
	}
	return err
}
