// Package distro builds kata-deploy's .deb and .rpm with nfpm: the binaries, the default
// configuration, man pages and shell completions generated from the command tree, the
// maintainer scripts (install prints the next step, removal uninstalls, upgrade upgrades) and
// the notes. Everything that varies between builds (file times, build host) is fixed, so the
// same inputs give the same bytes.
package distro

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/configs"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

//go:embed files
var embedded embed.FS

// Name is the package's name in both families.
const Name = "kata-deploy"

// Families are the package formats built, in order.
var Families = []string{"deb", "rpm"}

const (
	// LibDir holds every binary; /usr/bin links to the two users run. kata-deploy install takes
	// the shim and the agent from the directory of the resolved kata-deploy executable.
	LibDir = "/usr/lib/kata-deploy"
	// DefaultsDir holds the documented default configuration.
	DefaultsDir = "/usr/share/kata-deploy/defaults"
	// DocDir holds the notes and the copyright.
	DocDir = "/usr/share/doc/kata-deploy"

	// guestImageCache is kata-guest-image's default --cache-dir (cmd/kata-guest-image).
	guestImageCache = "/var/cache/kata-deploy/kernels"
	cacheRoot       = "/var/cache/kata-deploy"
)

// Binaries are the files `make build` puts in its bin directory, all packaged in LibDir.
var Binaries = []string{"kata-deploy", layout.ShimName, layout.AgentName, "kata-guest-image", pluginsvc.BinaryName}

// PluginsUnit is where the packages put kata-plugins' systemd unit. It is shipped disabled and no
// script starts it: `kata-deploy install --with-plugins` installs the plugin and starts it (with a
// unit of its own in /etc/systemd/system, which takes precedence).
const PluginsUnit = "/usr/lib/systemd/system/kata-plugins.service"

// Options say what to package.
type Options struct {
	BinDir  string // the built binaries (Binaries)
	Config  string // the default configuration-qemu.toml
	License string // the LICENSE text (rpm's %license)
	// Version is the package version (PackageVersion turns git describe into one).
	Version string
	// MTime is every file's time, the packages' build time and the man pages' date:
	// SOURCE_DATE_EPOCH, the commit's time, for reproducible output.
	MTime  time.Time
	OutDir string
	// Root makes kata-deploy's command tree (man pages, completions).
	Root func() *cobra.Command
}

// FileName is the name of the package of a family for a version.
func FileName(family, version string) string {
	if family == "rpm" {
		return fmt.Sprintf("%s-%s.x86_64.rpm", Name, version)
	}
	return fmt.Sprintf("%s_%s_amd64.deb", Name, version)
}

// Build writes the .deb and the .rpm into OutDir and returns their paths.
func Build(o Options) ([]string, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the output directory: %w", err)
	}
	stage, err := os.MkdirTemp("", "kata-deploy-packages-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	var out []string
	for _, family := range Families {
		path, err := o.build(family, filepath.Join(stage, family))
		if err != nil {
			for _, p := range out {
				os.Remove(p) // no release with one package of two
			}
			return nil, fmt.Errorf("building the %s: %w", family, err)
		}
		out = append(out, path)
	}
	return out, nil
}

// versionRe is what dpkg and rpm both accept, and what is safe in a file name.
var versionRe = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`)

func (o Options) check() error {
	var errs []error
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			errs = append(errs, fmt.Errorf("%w (make build puts it in bin/)", err))
		}
	}
	for _, f := range []string{o.Config, o.License} {
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, err)
		}
	}
	if !versionRe.MatchString(o.Version) {
		errs = append(errs, fmt.Errorf("package version %q: want digits, letters and . + ~ only, starting with a digit (PackageVersion makes one from git describe)", o.Version))
	}
	if o.MTime.IsZero() || o.OutDir == "" || o.Root == nil {
		errs = append(errs, errors.New("the file time, the output directory and the command tree are all needed"))
	}
	return errors.Join(errs...)
}

// build writes one family's package; stage is a directory for the generated files.
func (o Options) build(family, stage string) (string, error) {
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return "", err
	}
	info, err := o.info(family, stage)
	if err != nil {
		return "", err
	}
	packager, err := nfpm.Get(family)
	if err != nil {
		return "", err
	}
	path := filepath.Join(o.OutDir, FileName(family, o.Version))
	tmp, err := os.CreateTemp(o.OutDir, ".partial-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := packager.Package(nfpm.WithDefaults(info), tmp); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

// info is the nfpm description of one family's package.
func (o Options) info(family, stage string) (*nfpm.Info, error) {
	contents, err := o.contents(family, stage)
	if err != nil {
		return nil, err
	}
	scripts, err := writeScripts(family, stage)
	if err != nil {
		return nil, err
	}
	info := &nfpm.Info{
		Name:          Name,
		Arch:          "amd64",
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none", // PackageVersion already made it valid for both families
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "The kata-deploy authors",
		Description: "Run Docker containers inside lightweight virtual machines\n" +
			"kata-deploy makes a Docker (or containerd) host run each container in its own\n" +
			"QEMU virtual machine: sudo kata-deploy install registers the runtime \"kata\",\n" +
			"docker run --runtime=kata runs a container in a VM, and sudo kata-deploy\n" +
			"uninstall puts the host back as it was.",
		Vendor:   "kata-deploy",
		Homepage: "https://github.com/kata-deploy/kata-deploy",
		License:  "Apache-2.0",
		MTime:    o.MTime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts:  scripts,
			Umask:    0o022,
		},
	}
	switch family {
	case "deb":
		// QEMU and its firmware (qboot is in qemu-system-data, pulled by qemu-system-x86); apt
		// fetches the guest kernel; virtiofsd only for shared_fs = "virtio-fs".
		info.Depends = []string{"libc6", "qemu-system-x86", "apt"}
		info.Recommends = []string{"virtiofsd | qemu-system-common (<< 1:8.0)"}
		info.Suggests = []string{"docker.io | docker-ce | containerd"}
		info.Deb.Compression = "xz" // a fifth smaller than gzip; every dpkg reads it
		// No Debian revision: the file name is kata-deploy_<version>_amd64.deb.
	case "rpm":
		info.Depends = []string{"glibc", "(qemu-kvm-core or qemu-system-x86-core)"}
		info.Recommends = []string{"virtiofsd"}
		info.RPM.Summary = "Run Docker containers inside lightweight virtual machines"
		info.RPM.Group = "System Environment/Base"
		info.RPM.BuildHost = "kata-deploy" // not the build machine's name: the bytes must not depend on it
		info.RPM.Compression = "xz"        // every rpm since RHEL 6 reads it
		info.Release = "1"
		info.RPM.Packager = info.Maintainer
	}
	return info, nil
}

// contents are the package's files. Every file has an explicit mode and the build's time.
func (o Options) contents(family, stage string) (files.Contents, error) {
	var c files.Contents
	add := func(src, dst, typ string, mode os.FileMode) {
		c = append(c, &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Mode: mode, MTime: o.MTime, Owner: "root", Group: "root"}})
	}
	// The package's own directories, so that removing it removes them (rpm leaves directories
	// no package owns).
	for _, d := range []string{LibDir, "/usr/share/kata-deploy", DefaultsDir, DocDir} {
		add("", d, files.TypeDir, 0o755)
	}
	if family == "rpm" {
		add("", "/usr/share/licenses/kata-deploy", files.TypeDir, 0o755)
	}
	for _, b := range Binaries {
		add(filepath.Join(o.BinDir, b), LibDir+"/"+b, files.TypeFile, 0o755)
	}
	for _, b := range []string{"kata-deploy", "kata-guest-image"} {
		add(LibDir+"/"+b, "/usr/bin/"+b, files.TypeSymlink, 0o777)
	}
	add(o.Config, DefaultsDir+"/"+layout.ConfigName, files.TypeFile, 0o644)

	root := o.Root()
	gen, err := manPages(root, o.MTime)
	if err != nil {
		return nil, err
	}
	comp, err := completions(root, family)
	if err != nil {
		return nil, err
	}
	gen = append(gen, comp...)
	notes := "README.Debian"
	if family == "rpm" {
		notes = "README.packages"
	}
	readme, err := expand("files/README.packages")
	if err != nil {
		return nil, err
	}
	gen = append(gen, generated{dst: DocDir + "/" + notes, data: readme}, generated{dst: PluginsUnit, data: configs.PluginsUnit})
	if family == "deb" {
		copyright, err := embedded.ReadFile("files/copyright")
		if err != nil {
			return nil, err
		}
		gen = append(gen, generated{dst: DocDir + "/copyright", data: copyright})
	} else {
		add(o.License, "/usr/share/licenses/kata-deploy/LICENSE", files.TypeRPMLicense, 0o644)
	}
	for i, g := range gen {
		src := filepath.Join(stage, fmt.Sprintf("gen-%03d-%s", i, filepath.Base(g.dst)))
		if err := os.WriteFile(src, g.data, 0o644); err != nil {
			return nil, err
		}
		add(src, g.dst, files.TypeFile, 0o644)
	}
	return c, nil
}

// writeScripts writes the family's maintainer scripts into stage, with the install's paths.
func writeScripts(family, stage string) (nfpm.Scripts, error) {
	var s nfpm.Scripts
	names := map[string]*string{"deb-postinst": &s.PostInstall, "deb-prerm": &s.PreRemove, "deb-postrm": &s.PostRemove}
	if family == "rpm" {
		names = map[string]*string{"rpm-post": &s.PostInstall, "rpm-preun": &s.PreRemove, "rpm-postun": &s.PostRemove}
	}
	for name, field := range names {
		data, err := expand("files/" + name)
		if err != nil {
			return s, err
		}
		path := filepath.Join(stage, name)
		if err := os.WriteFile(path, data, 0o755); err != nil {
			return s, err
		}
		*field = path
	}
	return s, nil
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// hostPaths are the paths on the host the scripts and the notes name, each from its one owner.
type hostPaths struct {
	Prefix, Bin, KernelCache, GuestImageCache, CacheRoot, Lock, State string
}

var defaultPaths = hostPaths{
	Prefix:          layout.DefaultPrefix,
	Bin:             LibDir + "/kata-deploy",
	KernelCache:     install.DefaultKernelCache,
	GuestImageCache: guestImageCache,
	CacheRoot:       cacheRoot,
	Lock:            manifest.DefaultLockPath,
	State:           config.DefaultStateDir, // empty when no VM runs
}

func expand(name string) ([]byte, error) { return render(name, defaultPaths) }

// render reads an embedded file and puts the paths in.
func render(name string, p hostPaths) ([]byte, error) {
	data, err := embedded.ReadFile(name)
	if err != nil {
		return nil, err
	}
	r := strings.NewReplacer(
		"@PREFIX@", p.Prefix,
		"@BIN@", p.Bin,
		"@CACHES@", p.KernelCache+" "+p.GuestImageCache,
		"@KERNEL_CACHE@", p.KernelCache,
		"@CACHE_ROOT@", p.CacheRoot,
		"@LOCK@", p.Lock,
		"@STATE@", p.State,
	)
	out := r.Replace(string(data))
	if left := placeholder.FindString(out); left != "" {
		return nil, fmt.Errorf("%s: placeholder %s has no value", name, left)
	}
	return []byte(out), nil
}
