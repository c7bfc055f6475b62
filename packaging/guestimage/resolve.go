package guestimage

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// DefaultModules returns the modules the agent loads at boot: the virtio PCI transport and the
// virtio-serial console, its channel to the host. Libraries they need (virtio, virtio_ring, ...)
// follow from each module's "depends=". Everything else a guest may need is in ModuleGroups.
func DefaultModules() []string {
	return []string{"virtio_pci", "virtio_console"}
}

// ModuleGroups are the modules put in the image but loaded by the agent only when a container
// needs them, by group (agentproto.ModuleGroup*): the shared file system's (9p or virtio-fs), the
// network's, disks and their file systems (ext4 and xfs, 6.5 MB), vsock. The host names the
// groups a VM will use on the kernel command line and the agent loads them while the host sets
// the container up; the others cost no boot time. Transports nothing depends on (9pnet_virtio)
// must be named: without modprobe in the guest nobody would load them. ext4 and xfs find their
// checksum through the crypto API, which no module dependency names.
func ModuleGroups() map[string][]string {
	return map[string][]string{
		agentproto.ModuleGroup9P:       {"9pnet_virtio", "9p"},
		agentproto.ModuleGroupVirtioFS: {"virtiofs"},
		agentproto.ModuleGroupNet:      {"virtio_net"},
		agentproto.ModuleGroupBlock:    {"virtio_blk"},
		agentproto.ModuleGroupFS:       {"crc32c_generic", "ext4", "xfs"},
		agentproto.ModuleGroupVsock:    {"vmw_vsock_virtio_transport"},
	}
}

// groupRoots are the modules groups name, by group name order.
func groupRoots(groups map[string][]string) []string {
	var roots []string
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		roots = append(roots, groups[name]...)
	}
	return roots
}

// likelyHelpers are modules DefaultModules usually pulls in. A package scan
// keeps their bytes even when it meets them before the module that needs
// them, which spares a second pass over a large package. They are a hint
// only: nothing is loaded unless a dependency asks for it.
func likelyHelpers() []string {
	return []string{
		"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
		"netfs", "fscache", "9pnet", "fuse", "vsock", "vmw_vsock_virtio_transport_common",
		"failover", "net_failover",
	}
}

// Module is a kernel module ready to go into the initrd.
type Module struct {
	Name     string   // canonical name ('_' not '-'), e.g. "9pnet_virtio"
	Path     string   // where it was found: a file, or a path inside a package
	Depends  []string // direct dependencies from .modinfo, sorted
	Vermagic string   // the kernel the module was built for
	Data     []byte   // the uncompressed .ko
}

// moduleTree is what a kernel's module directory offers.
type moduleTree struct {
	mods map[string]*Module
	// builtin lists modules compiled into the kernel; nil when there was
	// no modules.builtin to consult.
	builtin map[string]bool
}

func newModuleTree() *moduleTree {
	return &moduleTree{mods: map[string]*Module{}}
}

// add records a module. When a name occurs at two paths it keeps the one
// depmod would pick (updates/ before extra/ before the rest); when the same
// file is seen again (a second pass over a package) it keeps whichever copy
// holds the module's bytes.
func (t *moduleTree) add(m *Module) {
	old, ok := t.mods[m.Name]
	switch {
	case !ok:
	case old.Path == m.Path:
		if m.Data == nil {
			return
		}
	case !preferredPath(m.Path, old.Path):
		return
	}
	t.mods[m.Name] = m
}

func preferredPath(a, b string) bool {
	if ra, rb := pathRank(a), pathRank(b); ra != rb {
		return ra < rb
	}
	return a < b
}

func pathRank(p string) int {
	switch {
	case strings.Contains(p, "/updates/") || strings.HasPrefix(p, "updates/"):
		return 0
	case strings.Contains(p, "/extra/") || strings.HasPrefix(p, "extra/"):
		return 1
	default:
		return 2
	}
}

// loadOrder returns the transitive closure of want, dependencies first.
// Wanted modules compiled into the kernel are skipped; assumed lists the
// ones skipped only because no modules.builtin was available to check.
func (t *moduleTree) loadOrder(want []string) (order, assumed []string, err error) {
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if done[name] {
			return nil
		}
		if visiting[name] {
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(slices.Clip(chain), name), " -> "))
		}
		m, ok := t.mods[name]
		if !ok {
			return fmt.Errorf("module %s needs %s, which is not in the module tree: the modules directory is incomplete", chain[len(chain)-1], name)
		}
		visiting[name] = true
		for _, d := range m.Depends {
			if err := visit(d, append(slices.Clip(chain), name)); err != nil {
				return err
			}
		}
		visiting[name] = false
		done[name] = true
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		name := canonicalModuleName(w)
		if !validModuleName(name) {
			return nil, nil, fmt.Errorf("invalid module name %q: use names like 9pnet_virtio", w)
		}
		if _, ok := t.mods[name]; !ok {
			switch {
			case t.builtin[name]:
				continue
			case t.builtin == nil:
				assumed = append(assumed, name)
				continue
			default:
				return nil, nil, fmt.Errorf("module %s is neither a loadable module nor built into this kernel: use a kernel that has it (Debian's -cloud kernels lack 9p; use linux-image-amd64) or drop it from the module list", name)
			}
		}
		if err := visit(name, nil); err != nil {
			return nil, nil, err
		}
	}
	return order, assumed, nil
}

// parseBuiltin reads modules.builtin: one module path per line.
func parseBuiltin(r io.Reader) (map[string]bool, error) {
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if name := moduleNameFromPath(strings.TrimSpace(sc.Text())); name != "" {
			set[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	return set, nil
}

// moduleFromBytes parses a module file's contents (compressed or not).
// With keep false the returned Module carries metadata only.
func moduleFromBytes(p string, raw []byte, keep bool) (*Module, error) {
	ko, err := decompressModule(p, raw)
	if err != nil {
		return nil, err
	}
	mi, err := parseModinfo(ko)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	m, err := newModule(p, mi)
	if err != nil {
		return nil, err
	}
	if keep {
		m.Data = ko
	}
	return m, nil
}

func newModule(p string, mi modinfo) (*Module, error) {
	name := mi.name
	if name == "" {
		name = moduleNameFromPath(p)
	}
	if !validModuleName(name) {
		return nil, fmt.Errorf("%s: invalid module name %q", p, name)
	}
	deps := slices.Clone(mi.depends)
	slices.Sort(deps)
	return &Module{Name: name, Path: p, Depends: slices.Compact(deps), Vermagic: mi.vermagic}, nil
}

// ResolveModules finds want and everything it depends on in a module
// directory such as /lib/modules/<version>, and returns them in load order
// (dependencies first) with their uncompressed contents. No modules.dep is
// needed: dependencies come from each module's .modinfo section.
func ResolveModules(dir string, want []string) ([]Module, error) {
	mods, _, err := resolveModulesDir(dir, want)
	return mods, err
}

func resolveModulesDir(dir string, want []string) ([]Module, []string, error) {
	tree, err := scanModulesDir(dir)
	if err != nil {
		return nil, nil, err
	}
	order, assumed, err := tree.loadOrder(want)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Module, 0, len(order))
	for _, name := range order {
		m := *tree.mods[name]
		raw, err := os.ReadFile(m.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("read module %s: %w", name, err)
		}
		if m.Data, err = decompressModule(m.Path, raw); err != nil {
			return nil, nil, err
		}
		out = append(out, m)
	}
	return out, assumed, nil
}

func scanModulesDir(dir string) (*moduleTree, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("modules directory %s is not readable (%v): pass /lib/modules/<kernel version>", dir, err)
	}
	tree := newModuleTree()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || moduleNameFromPath(p) == "" {
			return nil
		}
		m, err := moduleFromFile(p)
		if err != nil {
			return err
		}
		tree.add(m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules in %s: %w", dir, err)
	}
	if len(tree.mods) == 0 {
		return nil, fmt.Errorf("no kernel modules (*.ko, *.ko.xz, *.ko.zst) under %s: pass /lib/modules/<kernel version>", dir)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	switch {
	case err == nil:
		defer f.Close()
		if tree.builtin, err = parseBuiltin(f); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open modules.builtin: %w", err)
	}
	return tree, nil
}

// moduleFromFile reads a module's metadata. Plain .ko files are parsed in
// place, reading only the ELF headers and .modinfo, which keeps a scan of
// a few thousand modules cheap.
func moduleFromFile(p string) (*Module, error) {
	if path.Ext(p) != ".ko" {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		return moduleFromBytes(p, raw, false)
	}
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF kernel module: %w", p, err)
	}
	defer f.Close()
	mi, err := modinfoFromELF(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return newModule(p, mi)
}

// checkVermagic makes sure every module was built for kernel version: a
// module from another build is refused by finit_module inside the guest,
// far from where the mistake was made.
func checkVermagic(mods []Module, version string) error {
	for _, m := range mods {
		built, _, _ := strings.Cut(strings.TrimSpace(m.Vermagic), " ")
		if built != version {
			return fmt.Errorf("module %s (%s) was built for kernel %q, not %q: take the kernel and its modules from the same package", m.Name, m.Path, built, version)
		}
	}
	return nil
}

// moduleNames lists the names of mods, in order.
func moduleNames(mods []Module) []string {
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.Name
	}
	return names
}

// splitOnDemand separates the modules boot needs (those in boot and their dependencies) from the
// rest, each in load order.
func splitOnDemand(mods []Module, boot []string) (atBoot, later []Module) {
	byName := make(map[string]*Module, len(mods))
	for i := range mods {
		byName[mods[i].Name] = &mods[i]
	}
	need := map[string]bool{}
	var mark func(string)
	mark = func(name string) {
		name = canonicalModuleName(name)
		if need[name] {
			return
		}
		need[name] = true
		if m := byName[name]; m != nil {
			for _, d := range m.Depends {
				mark(d)
			}
		}
	}
	for _, n := range boot {
		mark(n)
	}
	for _, m := range mods {
		if need[m.Name] {
			atBoot = append(atBoot, m)
		} else {
			later = append(later, m)
		}
	}
	return atBoot, later
}

// groupLists names, for each group, the modules of later it loads: those it names and their
// dependencies, in load order. A dependency two groups share is in both lists.
func groupLists(later []Module, groups map[string][]string) map[string][]string {
	lists := make(map[string][]string, len(groups))
	for name, roots := range groups {
		mods, _ := splitOnDemand(later, roots)
		lists[name] = moduleNames(mods)
	}
	return lists
}
