// Package ociarchive writes the installer image as an OCI image layout tarball, without a
// container engine and byte for byte the same for the same inputs: `docker load -i` reads it
// (index.json for the containerd image store, manifest.json for the classic one).
package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Dir is where the image's files are, as the Dockerfile's COPY puts them.
const Dir = "usr/lib/kata-deploy"

// File is one file of the image, copied from Source into Dir/Name.
type File struct {
	Name   string
	Source string
	Mode   os.FileMode // permission bits only: 0755 for programs, 0644 for data
}

// Options describe the image: what the Dockerfile and hack/image.sh give `docker build`.
type Options struct {
	Repository string // e.g. kata-deploy
	Tag        string // the version, e.g. v1.2.3-4-gabcdef
	Revision   string // the commit
	Created    time.Time
	Files      []File
}

// The Dockerfile's ENV, ENTRYPOINT and CMD.
var (
	env        = []string{"KATA_DEPLOY_HOST_ROOT=/host", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	entrypoint = []string{"/" + Dir + "/kata-deploy"}
	cmd        = []string{"--help"}
)

// Docker's reference grammar for a repository path component and a tag.
var (
	repoRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*$`)
)

// Name is the image's reference, REPOSITORY:TAG.
func (o Options) Name() string { return o.Repository + ":" + o.Tag }

func (o Options) validate() error {
	if !repoRe.MatchString(o.Repository) {
		return fmt.Errorf("image repository %q is not a valid Docker repository name", o.Repository)
	}
	if !tagRe.MatchString(o.Tag) {
		return fmt.Errorf("image tag %q is not a valid Docker tag (letters, digits, _ . -; at most 128)", o.Tag)
	}
	if o.Created.IsZero() {
		return fmt.Errorf("image creation time is not set: pass the commit's time (SOURCE_DATE_EPOCH)")
	}
	seen := map[string]bool{}
	for _, f := range o.Files {
		if !nameRe.MatchString(f.Name) || f.Name == "." || f.Name == ".." || seen[f.Name] {
			return fmt.Errorf("image file name %q is not a plain, unique file name", f.Name)
		}
		seen[f.Name] = true
	}
	if !seen[path.Base(entrypoint[0])] {
		return fmt.Errorf("the image needs its entrypoint %s among its files", path.Base(entrypoint[0]))
	}
	return nil
}

// blob is a content-addressed file of the layout.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(mediaType, data), nil
}

// Write writes the image archive to w.
func Write(w io.Writer, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	layerTar, err := layer(o)
	if err != nil {
		return err
	}
	gz, err := gzipped(layerTar)
	if err != nil {
		return err
	}
	layerBlob := newBlob(ocispec.MediaTypeImageLayerGzip, gz)
	config, err := jsonBlob(ocispec.MediaTypeImageConfig, imageConfig(o, digest.FromBytes(layerTar)))
	if err != nil {
		return err
	}
	manifest, err := jsonBlob(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
		Layers:    []ocispec.Descriptor{layerBlob.desc},
	})
	if err != nil {
		return err
	}
	return writeLayout(w, o, []blob{layerBlob, config, manifest})
}

func imageConfig(o Options, diffID digest.Digest) ocispec.Image {
	created := o.Created.UTC()
	return ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        env,
			Entrypoint: entrypoint,
			Cmd:        cmd,
			Labels: map[string]string{
				ocispec.AnnotationVersion:  o.Tag,
				ocispec.AnnotationRevision: o.Revision,
			},
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{Created: &created, CreatedBy: "kata-packages: COPY . /" + Dir + "/"}},
	}
}

// layer is the uncompressed tar of the image's only layer: the directories down to Dir, then the
// files in name order, all owned by root, with fixed modes and the one time.
func layer(o Options) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"usr/", "usr/lib/", Dir + "/"} {
		if err := tw.WriteHeader(header(d, tar.TypeDir, 0o755, 0, o.Created)); err != nil {
			return nil, err
		}
	}
	files := append([]File(nil), o.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		if err := addFile(tw, f, o.Created); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addFile(tw *tar.Writer, f File, mtime time.Time) error {
	in, err := os.Open(f.Source)
	if err != nil {
		return fmt.Errorf("image file %s: %w", f.Name, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("image file %s: %s is not a regular file", f.Name, f.Source)
	}
	if err := tw.WriteHeader(header(Dir+"/"+f.Name, tar.TypeReg, int64(f.Mode.Perm()), st.Size(), mtime)); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, in, st.Size()); err != nil {
		return fmt.Errorf("image file %s: %w", f.Name, err)
	}
	return nil
}

// header is a PAX-free USTAR header: no user names, access or change times, nothing of the host.
func header(name string, typ byte, mode, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatUSTAR}
}

// gzipped compresses without a name or a time in the gzip header.
func gzipped(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dockerManifest is an entry of manifest.json, the classic image store's `docker load` format.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeLayout writes oci-layout, the blobs, index.json and manifest.json. blobs are the layer,
// the config and the manifest, in that order.
func writeLayout(w io.Writer, o Options, blobs []blob) error {
	layerB, config, manifest := blobs[0], blobs[1], blobs[2]
	mdesc := manifest.desc
	mdesc.Annotations = map[string]string{
		"io.containerd.image.name": "docker.io/library/" + o.Name(),
		ocispec.AnnotationRefName:  o.Tag,
	}
	mdesc.Platform = &ocispec.Platform{Architecture: "amd64", OS: "linux"}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mdesc},
	})
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	dm, err := json.Marshal([]dockerManifest{{Config: blobPath(config), RepoTags: []string{o.Name()}, Layers: []string{blobPath(layerB)}}})
	if err != nil {
		return err
	}
	entries := []entry{{ocispec.ImageLayoutFile, layout}, {"blobs/", nil}, {"blobs/sha256/", nil}}
	sorted := append([]blob(nil), blobs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].desc.Digest < sorted[j].desc.Digest })
	for _, b := range sorted {
		entries = append(entries, entry{blobPath(b), b.data})
	}
	entries = append(entries, entry{ocispec.ImageIndexFile, index}, entry{"manifest.json", dm})
	tw := tar.NewWriter(w)
	for _, e := range entries {
		typ, mode := byte(tar.TypeReg), int64(0o644)
		if e.data == nil {
			typ, mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(header(e.name, typ, mode, int64(len(e.data)), o.Created)); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// entry is a file (or, with nil data, a directory) of the archive.
type entry struct {
	name string
	data []byte
}

func blobPath(b blob) string {
	return "blobs/" + b.desc.Digest.Algorithm().String() + "/" + b.desc.Digest.Encoded()
}
