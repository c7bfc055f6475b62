// Command kata-guest-image builds a guest kernel (vmlinux) and initrd from a
// distribution kernel. It is a developer tool around packaging/guestimage;
// kata-deploy install does the same thing itself.
//
//	kata-guest-image --fetch --agent ./kata-agent --out ./guest
//	kata-guest-image --kernel-deb linux-image-6.1.0-27-amd64_*.deb --agent ./kata-agent --out ./guest
//	kata-guest-image --vmlinuz /boot/vmlinuz-$(uname -r) --modules-dir /lib/modules/$(uname -r) --agent ./kata-agent --out ./guest
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kata-guest-image:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		opts     guestimage.Options
		fetch    bool
		cacheDir string
		modules  string
	)
	flag.StringVar(&opts.KernelDeb, "kernel-deb", "", "Debian/Ubuntu kernel package (linux-image-*.deb)")
	flag.StringVar(&opts.Vmlinuz, "vmlinuz", "", "kernel bzImage, e.g. /boot/vmlinuz-<version> (use with --modules-dir)")
	flag.StringVar(&opts.ModulesDir, "modules-dir", "", "modules of that kernel, e.g. /lib/modules/<version>")
	flag.StringVar(&opts.AgentBinary, "agent", "", "static guest agent binary; becomes /init")
	flag.StringVar(&opts.OutDir, "out", "", "output directory for vmlinux, initrd.img, manifest.json")
	flag.BoolVar(&opts.Compress, "gzip", false, "gzip the initrd (smaller file, slower boot)")
	flag.StringVar(&modules, "modules", "", "comma-separated modules, all loaded at boot, instead of the default: "+strings.Join(guestimage.DefaultModules(), ",")+
		" at boot, and the shared file systems', network, disk and vsock modules in groups the agent loads when needed")
	flag.BoolVar(&fetch, "fetch", false, "download Debian's generic kernel package with apt-get and use it")
	flag.StringVar(&cacheDir, "cache-dir", "/var/cache/kata-deploy/kernels", "where --fetch keeps downloaded packages")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: everything is given with flags (see -h)", flag.Args())
	}
	if modules != "" {
		opts.Modules = splitList(modules)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	opts.Progress = func(step string) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), step)
	}
	if fetch {
		if opts.KernelDeb != "" || opts.Vmlinuz != "" {
			return fmt.Errorf("--fetch picks the kernel itself: drop --kernel-deb/--vmlinuz")
		}
		opts.Progress("fetching Debian's kernel package into " + cacheDir)
		deb, err := guestimage.FetchDebianKernel(ctx, cacheDir)
		if err != nil {
			return err
		}
		opts.KernelDeb = deb
	}
	m, err := guestimage.Build(ctx, opts)
	if err != nil {
		return err
	}
	opts.Progress(fmt.Sprintf("kernel %s, modules: %s", m.KernelVersion, strings.Join(m.Modules, " ")))
	fmt.Println(filepath.Join(opts.OutDir, guestimage.ManifestName))
	return nil
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
