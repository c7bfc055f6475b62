package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

var epoch = time.Unix(1700000000, 0).UTC()

// testOptions makes the image's files in a fresh directory, with host modes and times that must
// not reach the archive.
func testOptions(t *testing.T, hostTime time.Time) Options {
	t.Helper()
	dir := t.TempDir()
	files := []File{
		{Name: "kata-deploy", Mode: 0o755},
		{Name: "linux-image-6.1.0-1-amd64_6.1.1-1_amd64.deb", Mode: 0o644},
		{Name: "containerd-shim-kata-v2", Mode: 0o755},
	}
	for i := range files {
		files[i].Source = filepath.Join(dir, files[i].Name)
		if err := os.WriteFile(files[i].Source, []byte("content of "+files[i].Name), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(files[i].Source, hostTime, hostTime); err != nil {
			t.Fatal(err)
		}
	}
	return Options{Repository: "kata-deploy", Tag: "v1.2.3-4-gabcdef0", Revision: "abcdef0123", Created: epoch, Files: files}
}

func write(t *testing.T, o Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteIsReproducible(t *testing.T) {
	a := write(t, testOptions(t, time.Now()))
	b := write(t, testOptions(t, time.Now().Add(-time.Hour)))
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same inputs differ")
	}
	o := testOptions(t, time.Now())
	o.Tag = "v1.2.4"
	if bytes.Equal(a, write(t, o)) {
		t.Fatal("another version gave the same archive")
	}
}

// untar reads a tar into name -> header and content, checking what every entry must hold.
func untar(t *testing.T, data []byte) (map[string]*tar.Header, map[string][]byte, []string) {
	t.Helper()
	hdrs, files := map[string]*tar.Header{}, map[string][]byte{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d %q %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		hdrs[h.Name], files[h.Name] = h, b
		names = append(names, h.Name)
	}
	return hdrs, files, names
}

// blobOf returns a descriptor's blob, checking its size and digest.
func blobOf(t *testing.T, files map[string][]byte, d ocispec.Descriptor) []byte {
	t.Helper()
	b, ok := files["blobs/sha256/"+d.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s is missing", d.Digest)
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		t.Fatalf("blob %s: size %d (want %d), digest %s", d.Digest, len(b), d.Size, digest.FromBytes(b))
	}
	return b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

func TestWriteIsAValidLayout(t *testing.T) {
	_, files, _ := untar(t, write(t, testOptions(t, time.Now())))
	var layout ocispec.ImageLayout
	decode(t, files[ocispec.ImageLayoutFile], &layout)
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout: %+v", layout)
	}
	var index ocispec.Index
	decode(t, files[ocispec.ImageIndexFile], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests", len(index.Manifests))
	}
	md := index.Manifests[0]
	if md.Annotations[ocispec.AnnotationRefName] != "v1.2.3-4-gabcdef0" ||
		md.Annotations["io.containerd.image.name"] != "docker.io/library/kata-deploy:v1.2.3-4-gabcdef0" {
		t.Errorf("index.json annotations: %v", md.Annotations)
	}
	var manifest ocispec.Manifest
	decode(t, blobOf(t, files, md), &manifest)
	if manifest.SchemaVersion != 2 || manifest.Config.MediaType != ocispec.MediaTypeImageConfig || len(manifest.Layers) != 1 ||
		manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("manifest: %+v", manifest)
	}
	var config ocispec.Image
	decode(t, blobOf(t, files, manifest.Config), &config)
	checkConfig(t, config)
	layerTar := gunzip(t, blobOf(t, files, manifest.Layers[0]))
	if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != digest.FromBytes(layerTar) {
		t.Errorf("diff_ids %v, layer %s", config.RootFS.DiffIDs, digest.FromBytes(layerTar))
	}
	checkLayer(t, layerTar)
	var dm []dockerManifest
	decode(t, files["manifest.json"], &dm)
	if len(dm) != 1 || dm[0].Config != "blobs/sha256/"+manifest.Config.Digest.Encoded() ||
		!reflect.DeepEqual(dm[0].RepoTags, []string{"kata-deploy:v1.2.3-4-gabcdef0"}) ||
		!reflect.DeepEqual(dm[0].Layers, []string{"blobs/sha256/" + manifest.Layers[0].Digest.Encoded()}) {
		t.Errorf("manifest.json: %+v", dm)
	}
}

func checkConfig(t *testing.T, c ocispec.Image) {
	t.Helper()
	if c.Created == nil || !c.Created.Equal(epoch) || c.Architecture != "amd64" || c.OS != "linux" || c.RootFS.Type != "layers" {
		t.Errorf("config: %+v", c)
	}
	want := ocispec.ImageConfig{
		Env:        []string{"KATA_DEPLOY_HOST_ROOT=/host", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Entrypoint: []string{"/usr/lib/kata-deploy/kata-deploy"},
		Cmd:        []string{"--help"},
		Labels:     map[string]string{"org.opencontainers.image.version": "v1.2.3-4-gabcdef0", "org.opencontainers.image.revision": "abcdef0123"},
	}
	if !reflect.DeepEqual(c.Config, want) {
		t.Errorf("config:\n got %+v\nwant %+v", c.Config, want)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header holds name %q, time %v", zr.Name, zr.ModTime)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkLayer(t *testing.T, layerTar []byte) {
	t.Helper()
	hdrs, files, names := untar(t, layerTar)
	want := []string{"usr/", "usr/lib/", "usr/lib/kata-deploy/", "usr/lib/kata-deploy/containerd-shim-kata-v2",
		"usr/lib/kata-deploy/kata-deploy", "usr/lib/kata-deploy/linux-image-6.1.0-1-amd64_6.1.1-1_amd64.deb"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("layer entries:\n got %q\nwant %q", names, want)
	}
	modes := map[string]int64{"usr/": 0o755, "usr/lib/kata-deploy/kata-deploy": 0o755,
		"usr/lib/kata-deploy/linux-image-6.1.0-1-amd64_6.1.1-1_amd64.deb": 0o644}
	for name, mode := range modes {
		if hdrs[name].Mode != mode {
			t.Errorf("%s: mode %o, want %o", name, hdrs[name].Mode, mode)
		}
	}
	if string(files["usr/lib/kata-deploy/kata-deploy"]) != "content of kata-deploy" {
		t.Errorf("kata-deploy holds %q", files["usr/lib/kata-deploy/kata-deploy"])
	}
}

func TestWriteRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*Options)
		want   string
	}{
		"plus in tag":      {func(o *Options) { o.Tag = "1.2+dirty" }, "not a valid Docker tag"},
		"upper repository": {func(o *Options) { o.Repository = "Kata" }, "repository"},
		"no time":          {func(o *Options) { o.Created = time.Time{} }, "SOURCE_DATE_EPOCH"},
		"path as name":     {func(o *Options) { o.Files[0].Name = "../etc/passwd" }, "plain, unique"},
		"twice a name":     {func(o *Options) { o.Files[1].Name = o.Files[0].Name }, "plain, unique"},
		"no entrypoint":    {func(o *Options) { o.Files = o.Files[1:] }, "entrypoint"},
		"missing source":   {func(o *Options) { o.Files[0].Source += ".gone" }, "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions(t, epoch)
			tc.change(&o)
			err := Write(io.Discard, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// The archive's config is the Dockerfile's: `make image` and `make release` give the same image.
func TestConfigIsTheDockerfiles(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		instr, args, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch instr {
		case "ENV":
			got[instr] = strings.Fields(args)
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(args), &v); err != nil {
				t.Fatalf("Dockerfile %s is not in exec form: %v", instr, err)
			}
			got[instr] = v
		case "COPY":
			got[instr] = strings.Fields(args)
		}
	}
	want := map[string][]string{"ENV": env, "ENTRYPOINT": entrypoint, "CMD": cmd, "COPY": {".", "/" + Dir + "/"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Dockerfile:\n got %q\nwant %q", got, want)
	}
}

// The image carries every binary install copies into the host from kata-deploy's own directory:
// the shim and agent, and kata-plugins for install --with-plugins.
func TestInstallerFiles(t *testing.T) {
	kernel := "/cache/linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb"
	files, err := InstallerFiles("/bin-dir", kernel)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]File{}
	for _, f := range files {
		got[f.Name] = f
	}
	for _, name := range []string{"kata-deploy", layout.ShimName, layout.AgentName, pluginsvc.BinaryName} {
		if f, ok := got[name]; !ok || f.Source != "/bin-dir/"+name || f.Mode != 0o755 {
			t.Errorf("%s: %+v (present %v), want /bin-dir/%s mode 0755", name, f, ok, name)
		}
	}
	if f, ok := got[filepath.Base(kernel)]; !ok || f.Source != kernel || f.Mode != 0o644 {
		t.Errorf("kernel package: %+v (present %v)", f, ok)
	}
	if len(files) != 5 {
		t.Errorf("%d files, want 5: %+v", len(files), files)
	}
	if _, err := InstallerFiles("/bin-dir", "/cache/kernel.tar"); err == nil {
		t.Error("a kernel that is not a linux-image package was accepted")
	}
}
