// Package layout owns the names and paths of a kata-deploy install on disk, so that the installer
// that writes them and the runtime that reads them cannot drift apart.
//
// In the versioned layout each set of artifacts lives in <prefix>/versions/<id>/{bin,share} and
// the symlink <prefix>/current points at the one in use; the runtime is registered through
// current, so that switching versions is one atomic rename with no engine reload (running
// containers keep the shim they started with). The flat layout of the first installs (bin/ and
// share/ directly under the prefix) is still read by migration, uninstall and status.
//
// The package imports only the standard library: runtime/ and installer/ both depend on it.
package layout

import "path/filepath"

// Names under the prefix and inside a version.
const (
	DefaultPrefix   = "/opt/kata-deploy"
	VersionsDirName = "versions"
	CurrentLinkName = "current"
	BinDirName      = "bin"
	ShareDirName    = "share"
	// ImageDirName is share/'s directory of the guest image.
	ImageDirName = "kata-deploy"
	// DefaultsDirName is share/'s directory of the runtime's configuration.
	DefaultsDirName = "defaults"
	ShimName        = "containerd-shim-kata-v2"
	AgentName       = "kata-agent"
	ConfigName      = "configuration-qemu.toml"
	VmlinuxName     = "vmlinux"
	InitrdName      = "initrd.img"
	// ImageManifestName records what the guest image was built from; StagingDirName is where it
	// is built before its files are renamed into place.
	ImageManifestName = "image-manifest.json"
	StagingDirName    = ".build"
)

// Paths of the default install, through current: what the runtime reads when nothing says
// otherwise. Constants, so that they can be the runtime's defaults; TestDefaults checks that
// they match Current(DefaultPrefix).
const (
	defaultTree       = DefaultPrefix + "/" + CurrentLinkName
	defaultImageDir   = defaultTree + "/" + ShareDirName + "/" + ImageDirName
	DefaultConfigPath = defaultTree + "/" + ShareDirName + "/" + DefaultsDirName + "/" + ConfigName
	DefaultVmlinux    = defaultImageDir + "/" + VmlinuxName
	DefaultInitrd     = defaultImageDir + "/" + InitrdName
)

// Tree is a directory holding a bin/ and a share/ of kata-deploy's artifacts: a version's
// directory, the prefix itself in the flat layout, or <prefix>/current.
type Tree string

// Paths inside the tree.
func (t Tree) Bin() string           { return filepath.Join(string(t), BinDirName) }
func (t Tree) Shim() string          { return filepath.Join(t.Bin(), ShimName) }
func (t Tree) Share() string         { return filepath.Join(string(t), ShareDirName) }
func (t Tree) ImageDir() string      { return filepath.Join(t.Share(), ImageDirName) }
func (t Tree) Vmlinux() string       { return filepath.Join(t.ImageDir(), VmlinuxName) }
func (t Tree) Initrd() string        { return filepath.Join(t.ImageDir(), InitrdName) }
func (t Tree) ImageManifest() string { return filepath.Join(t.ImageDir(), ImageManifestName) }
func (t Tree) Staging() string       { return filepath.Join(t.ImageDir(), StagingDirName) }
func (t Tree) DefaultsDir() string   { return filepath.Join(t.Share(), DefaultsDirName) }
func (t Tree) Config() string        { return filepath.Join(t.DefaultsDir(), ConfigName) }

// Current is the tree <prefix>/current points at, named through the link.
func Current(prefix string) Tree { return Tree(filepath.Join(prefix, CurrentLinkName)) }

// Layout names the files of one version of an install. Version "" is the flat layout.
type Layout struct {
	Prefix  string
	Version string
}

// Root is the directory holding the version's bin/ and share/.
func (l Layout) Root() string { return string(l.Tree()) }

// Tree is the version's tree.
func (l Layout) Tree() Tree {
	if l.Version == "" {
		return Tree(l.Prefix)
	}
	return Tree(filepath.Join(l.VersionsDir(), l.Version))
}

// Paths of the version's files.
func (l Layout) Bin() string           { return l.Tree().Bin() }
func (l Layout) Shim() string          { return l.Tree().Shim() }
func (l Layout) Share() string         { return l.Tree().Share() }
func (l Layout) ImageDir() string      { return l.Tree().ImageDir() }
func (l Layout) Vmlinux() string       { return l.Tree().Vmlinux() }
func (l Layout) Initrd() string        { return l.Tree().Initrd() }
func (l Layout) ImageManifest() string { return l.Tree().ImageManifest() }
func (l Layout) Staging() string       { return l.Tree().Staging() }
func (l Layout) DefaultsDir() string   { return l.Tree().DefaultsDir() }
func (l Layout) Config() string        { return l.Tree().Config() }

// VersionsDir holds the versions; CurrentLink is the symlink to the one in use.
func (l Layout) VersionsDir() string { return filepath.Join(l.Prefix, VersionsDirName) }
func (l Layout) CurrentLink() string { return filepath.Join(l.Prefix, CurrentLinkName) }

// entry is the tree the runtime is registered through: current in the versioned layout.
func (l Layout) entry() Tree {
	if l.Version == "" {
		return l.Tree()
	}
	return Current(l.Prefix)
}

// EntryShim and EntryConfig are the paths the runtime is registered with.
func (l Layout) EntryShim() string   { return l.entry().Shim() }
func (l Layout) EntryConfig() string { return l.entry().Config() }

// Dirs are the directories of an install, parents first.
func (l Layout) Dirs() []string {
	if l.Version == "" {
		return []string{l.Prefix, l.Bin(), l.Share(), l.ImageDir(), l.DefaultsDir()}
	}
	return []string{l.Prefix, l.VersionsDir(), l.Root(), l.Bin(), l.Share(), l.ImageDir(), l.DefaultsDir()}
}
