package guestimage

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/cavaliergopher/cpio"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// Paths inside the initrd that the guest agent relies on, under the names the
// image builder has always exported; the values belong to the protocol.
const (
	// ModulesLoadPath lists the modules to load, one name per line, in
	// load order; each is at ModulesDirPath/<name>.ko.
	ModulesLoadPath = agentproto.ModulesListPath
	ModulesDirPath  = agentproto.ModulesDir
	InitPath        = agentproto.InitPath
)

// File is one entry of an initrd.
type File struct {
	// Path inside the image, slash-separated, e.g. "/init" or
	// "/lib/modules/virtio.ko". A leading slash is optional.
	Path string
	// Mode holds the permission bits plus fs.ModeDir or fs.ModeSymlink
	// (nothing else means a regular file). Setuid, setgid and sticky
	// bits are kept.
	Mode fs.FileMode
	// Data is a regular file's contents.
	Data []byte
	// Linkname is a symlink's target.
	Linkname string
}

// WriteInitrd writes files as an uncompressed newc cpio archive that the
// kernel unpacks as its initramfs. The output depends only on the files:
// entries are sorted by path, missing parent directories are added (mode
// 0755), and every entry has owner 0:0 and mtime 0.
func WriteInitrd(w io.Writer, files []File) error {
	entries, err := normalizeEntries(files)
	if err != nil {
		return err
	}
	cw := cpio.NewWriter(w)
	for _, f := range entries {
		if err := writeEntry(cw, f); err != nil {
			return fmt.Errorf("write initrd entry %s: %w", f.Path, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("finish initrd: %w", err)
	}
	return nil
}

// normalizeEntries cleans paths, rejects unsafe or duplicate ones, adds
// parent directories and sorts, so that every directory precedes its
// contents.
func normalizeEntries(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p, err := cleanArchivePath(f.Path)
		if err != nil {
			return nil, err
		}
		f.Path = p
		if old, dup := byPath[p]; dup && !(old.Mode.IsDir() && f.Mode.IsDir() && old.Mode == f.Mode) {
			return nil, fmt.Errorf("initrd path %s given twice", p)
		}
		byPath[p] = f
	}
	for p := range byPath {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if old, ok := byPath[dir]; ok {
				if !old.Mode.IsDir() {
					return nil, fmt.Errorf("initrd path %s is not a directory but %s is inside it", dir, p)
				}
				continue
			}
			byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// cleanArchivePath turns "/a/b" into "a/b" and refuses anything that could
// land outside the archive root.
func cleanArchivePath(p string) (string, error) {
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return "", fmt.Errorf("invalid initrd path %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("initrd path %q contains \"..\"", p)
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "", fmt.Errorf("initrd path %q names the root", p)
	}
	return c, nil
}

func writeEntry(cw *cpio.Writer, f File) error {
	hdr := &cpio.Header{Name: f.Path, Mode: cpioMode(f.Mode)}
	var body []byte
	switch {
	case f.Mode.IsDir():
		hdr.Links = 2
	case f.Mode&fs.ModeSymlink != 0:
		if f.Linkname == "" {
			return fmt.Errorf("symlink has no target")
		}
		hdr.Links = 1
		body = []byte(f.Linkname)
	case f.Mode.Type() == 0:
		hdr.Links = 1
		body = f.Data
	default:
		return fmt.Errorf("unsupported file type %v: only directories, regular files and symlinks", f.Mode.Type())
	}
	hdr.Size = int64(len(body))
	if err := cw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := cw.Write(body)
	return err
}

func cpioMode(m fs.FileMode) cpio.FileMode {
	mode := cpio.FileMode(m.Perm())
	switch {
	case m.IsDir():
		mode |= cpio.TypeDir
	case m&fs.ModeSymlink != 0:
		mode |= cpio.TypeSymlink
	default:
		mode |= cpio.TypeReg
	}
	if m&fs.ModeSetuid != 0 {
		mode |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		mode |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		mode |= cpio.ModeSticky
	}
	return mode
}

// initrdFiles lays out the guest's initramfs: the agent as /init, the
// modules under /lib/modules by name, the load lists, and the mount points
// the agent uses before anything else is mounted. mods are loaded at boot
// (ModulesLoadPath); onDemand when the agent needs them, by the group lists
// (agentproto.ModuleGroupsDir/<group>.load).
func initrdFiles(agent []byte, mods, onDemand []Module, groups map[string][]string) []File {
	dirs := []string{"/dev", "/proc", "/sys", "/run", "/etc", path.Dir(ModulesLoadPath), ModulesDirPath}
	files := make([]File, 0, len(dirs)+len(mods)+len(onDemand)+len(groups)+4)
	for _, d := range dirs {
		files = append(files, File{Path: d, Mode: fs.ModeDir | 0o755})
	}
	files = append(files,
		File{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		File{Path: InitPath, Mode: 0o755, Data: agent},
	)
	var load strings.Builder
	for _, m := range mods {
		files = append(files, File{Path: ModulesDirPath + "/" + m.Name + ".ko", Mode: 0o644, Data: m.Data})
		load.WriteString(m.Name + "\n")
	}
	files = append(files, File{Path: ModulesLoadPath, Mode: 0o644, Data: []byte(load.String())})
	for _, m := range onDemand {
		files = append(files, File{Path: ModulesDirPath + "/" + m.Name + ".ko", Mode: 0o644, Data: m.Data})
	}
	if len(groups) > 0 {
		files = append(files, File{Path: agentproto.ModuleGroupsDir, Mode: fs.ModeDir | 0o755})
	}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		data := strings.Join(groups[name], "\n") + "\n"
		files = append(files, File{Path: agentproto.ModuleGroupsDir + "/" + name + ".load", Mode: 0o644, Data: []byte(data)})
	}
	return files
}
