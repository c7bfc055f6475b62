// Package guestimage turns a distribution kernel into a fast QEMU guest:
// an uncompressed PVH vmlinux that QEMU boots directly, and a reproducible
// initrd holding the guest agent as /init plus the kernel modules it needs
// in load order.
package guestimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Names of the files Build writes into Options.OutDir.
const (
	VmlinuxName  = layout.VmlinuxName
	InitrdName   = layout.InitrdName
	ManifestName = "manifest.json"
)

// maxAgentSize bounds the agent binary read into memory.
const maxAgentSize = 512 << 20

// Options says where the kernel comes from and where the image goes.
// Give either KernelDeb, or Vmlinuz and ModulesDir.
type Options struct {
	KernelDeb   string   // a linux-image-*.deb
	Vmlinuz     string   // a bzImage (or an already extracted vmlinux ELF)
	ModulesDir  string   // /lib/modules/<version> matching Vmlinuz
	AgentBinary string   // static x86-64 executable that becomes /init
	Modules     []string // modules to load at boot; nil means DefaultModules(), with ModuleGroups() on demand
	OutDir      string   // receives vmlinux, initrd.img, manifest.json
	Compress    bool     // gzip the initrd (smaller, but slower to boot)
	Progress    func(step string)
}

// Manifest describes a built guest image; it is written last, so a reader
// that finds it can trust the artifacts' checksums.
type Manifest struct {
	KernelVersion string   `json:"kernelVersion"`
	KernelSource  string   `json:"kernelSource"`
	Modules       []string `json:"modules"`
	// OnDemand are modules in the image that the agent loads only when needed.
	OnDemand []string `json:"onDemand,omitempty"`
	// Groups are those modules by module group (agentproto.ModuleGroup*), each in load order.
	Groups    map[string][]string `json:"groups,omitempty"`
	Artifacts map[string]Artifact `json:"artifacts"`
}

// Artifact is one output file's checksum and size.
type Artifact struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// kernelInput is what either kind of kernel source yields.
type kernelInput struct {
	version string
	source  string // file name recorded in the manifest
	image   []byte // bzImage or vmlinux
	modules []Module
	// onDemand are loaded by the agent when needed, not at boot, by group.
	onDemand []Module
	groups   map[string][]string
}

// Build extracts the kernel, resolves and packs the modules and the agent
// into an initrd, and writes vmlinux, initrd.img and manifest.json into
// OutDir. Nothing in OutDir changes unless every artifact was produced.
func Build(ctx context.Context, opts Options) (*Manifest, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	want, groups := opts.Modules, map[string][]string(nil)
	if want == nil {
		want, groups = DefaultModules(), ModuleGroups()
	}
	progress("reading agent " + opts.AgentBinary)
	agent, err := readAgent(opts.AgentBinary)
	if err != nil {
		return nil, err
	}
	in, err := loadKernel(ctx, opts, append(slices.Clone(want), groupRoots(groups)...), progress)
	if err != nil {
		return nil, err
	}
	progress("extracting vmlinux")
	vmlinux, err := toVmlinux(in.image)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.source, err)
	}
	if err := checkVermagic(in.modules, in.version); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("writing %s (kernel %s, %d modules)", opts.OutDir, in.version, len(in.modules)))
	boot, later := splitOnDemand(in.modules, want)
	in.modules, in.onDemand, in.groups = boot, later, groupLists(later, groups)
	return writeOutputs(opts.OutDir, in, vmlinux, initrdFiles(agent, boot, later, in.groups), opts.Compress)
}

func (o Options) validate() error {
	switch {
	case o.KernelDeb != "" && (o.Vmlinuz != "" || o.ModulesDir != ""):
		return errors.New("give either a kernel package or a vmlinuz with its modules directory, not both")
	case o.KernelDeb == "" && o.Vmlinuz == "":
		return errors.New("no kernel given: pass a kernel package (--kernel-deb) or a vmlinuz (--vmlinuz with --modules-dir)")
	case strings.HasSuffix(o.KernelDeb, ".rpm"):
		return errors.New("RPM kernel packages are not supported yet: install the package and pass its /boot/vmlinuz-<version> and /lib/modules/<version> instead")
	case o.AgentBinary == "":
		return errors.New("no agent binary given: it becomes the guest's /init")
	case o.OutDir == "":
		return errors.New("no output directory given")
	}
	return nil
}

// readAgent loads the agent and makes sure the guest can run it: a
// dynamically linked binary would find no loader or libc in the initrd.
func readAgent(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open agent binary: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, maxAgentSize)
	if err != nil {
		return nil, fmt.Errorf("read agent binary %s: %w", p, err)
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("agent %s is not an ELF executable: %w", p, err)
	}
	if ef.Machine != elf.EM_X86_64 || (ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN) {
		return nil, fmt.Errorf("agent %s is %s %s, want an x86-64 executable", p, ef.Machine, ef.Type)
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("agent %s is dynamically linked: build it static (CGO_ENABLED=0 go build)", p)
		}
	}
	return data, nil
}

func loadKernel(ctx context.Context, opts Options, want []string, progress func(string)) (*kernelInput, error) {
	if opts.KernelDeb != "" {
		return loadKernelDeb(ctx, opts.KernelDeb, want, progress)
	}
	return loadKernelFiles(opts.Vmlinuz, opts.ModulesDir, want, progress)
}

func loadKernelDeb(ctx context.Context, debPath string, want []string, progress func(string)) (*kernelInput, error) {
	progress("reading kernel package " + debPath)
	k, err := readKernelDeb(ctx, debPath, want, progress)
	if err != nil {
		return nil, err
	}
	reportAssumed(k.assumed, progress)
	if v, err := KernelVersion(k.vmlinuz); err == nil && v != k.version {
		return nil, fmt.Errorf("%s: vmlinuz reports kernel %s but the modules are for %s", debPath, v, k.version)
	}
	return &kernelInput{version: k.version, source: filepath.Base(debPath), image: k.vmlinuz, modules: k.modules}, nil
}

func loadKernelFiles(vmlinuz, modulesDir string, want []string, progress func(string)) (*kernelInput, error) {
	progress("reading kernel " + vmlinuz)
	image, err := os.ReadFile(vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("read kernel image: %w", err)
	}
	in := &kernelInput{source: filepath.Base(vmlinuz), image: image}
	if v, err := KernelVersion(image); err == nil {
		in.version = v
	}
	if len(want) == 0 {
		if in.version == "" {
			return nil, fmt.Errorf("%s: cannot tell the kernel version: pass --modules-dir /lib/modules/<version>", vmlinuz)
		}
		return in, nil
	}
	if modulesDir == "" {
		return nil, errors.New("a vmlinuz needs its modules: pass --modules-dir /lib/modules/<version>")
	}
	progress("resolving modules in " + modulesDir)
	mods, assumed, err := resolveModulesDir(modulesDir, want)
	if err != nil {
		return nil, err
	}
	reportAssumed(assumed, progress)
	in.modules = mods
	if in.version == "" { // an ELF vmlinux: trust the modules directory
		in.version = filepath.Base(filepath.Clean(modulesDir))
	}
	return in, nil
}

func reportAssumed(assumed []string, progress func(string)) {
	if len(assumed) > 0 {
		progress(fmt.Sprintf("no modules.builtin to check; assuming built in: %s", strings.Join(assumed, ", ")))
	}
}

// toVmlinux accepts a bzImage or an already uncompressed vmlinux.
func toVmlinux(image []byte) ([]byte, error) {
	if isELF(image) {
		return validateVmlinux(image)
	}
	return ExtractVmlinux(image)
}

// pendingOutput is an artifact written to a temporary file in the output
// directory, renamed into place only when all artifacts are ready.
type pendingOutput struct {
	name string
	file *renameio.PendingFile
	hash hash.Hash
	size int64
}

func (p *pendingOutput) Write(b []byte) (int, error) {
	n, err := p.file.Write(b)
	p.hash.Write(b[:n])
	p.size += int64(n)
	return n, err
}

func (p *pendingOutput) artifact() Artifact {
	return Artifact{SHA256: hex.EncodeToString(p.hash.Sum(nil)), Size: p.size}
}

func newPending(dir, name string) (*pendingOutput, error) {
	f, err := renameio.NewPendingFile(filepath.Join(dir, name), renameio.WithTempDir(dir), renameio.WithStaticPermissions(0o644))
	if err != nil {
		return nil, fmt.Errorf("create %s in %s: %w", name, dir, err)
	}
	return &pendingOutput{name: name, file: f, hash: sha256.New()}, nil
}

func writeOutputs(dir string, in *kernelInput, vmlinux []byte, files []File, compress bool) (m *Manifest, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var pending []*pendingOutput
	defer func() {
		for _, p := range pending {
			_ = p.file.Cleanup() // no-op for committed files
		}
	}()
	open := func(name string) (*pendingOutput, error) {
		p, err := newPending(dir, name)
		if err == nil {
			pending = append(pending, p)
		}
		return p, err
	}
	kernel, err := open(VmlinuxName)
	if err != nil {
		return nil, err
	}
	if _, err := kernel.Write(vmlinux); err != nil {
		return nil, fmt.Errorf("write %s: %w", VmlinuxName, err)
	}
	initrd, err := open(InitrdName)
	if err != nil {
		return nil, err
	}
	if err := writeInitrdTo(initrd, files, compress); err != nil {
		return nil, err
	}
	m = &Manifest{
		KernelVersion: in.version,
		KernelSource:  in.source,
		Modules:       moduleNames(in.modules),
		OnDemand:      moduleNames(in.onDemand),
		Groups:        in.groups,
		Artifacts:     map[string]Artifact{VmlinuxName: kernel.artifact(), InitrdName: initrd.artifact()},
	}
	manifest, err := open(ManifestName)
	if err != nil {
		return nil, err
	}
	if err := writeManifest(manifest, m); err != nil {
		return nil, err
	}
	// The manifest goes last: until it is replaced, the old manifest's
	// checksums expose any mix of old and new artifacts.
	for _, p := range pending {
		if err := p.file.CloseAtomicallyReplace(); err != nil {
			return nil, fmt.Errorf("install %s: %w", p.name, err)
		}
	}
	return m, nil
}

func writeInitrdTo(w io.Writer, files []File, compress bool) error {
	if !compress {
		return WriteInitrd(w, files)
	}
	// A zero gzip.Header writes mtime 0 and no file name, so the bytes
	// depend only on the contents (and the Go release's compressor).
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := WriteInitrd(zw, files); err != nil {
		return err
	}
	return zw.Close()
}

func writeManifest(w io.Writer, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
