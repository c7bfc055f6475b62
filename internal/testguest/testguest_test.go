package testguest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A different agent (or kernel) must name a different image; the same inputs the same one.
func TestCacheKey(t *testing.T) {
	dir := t.TempDir()
	deb, a1, a2 := write(t, dir, "k.deb", "kernel"), write(t, dir, "a1", "agent 1"), write(t, dir, "a2", "agent 2")
	ctx := context.Background()
	k1, err := cacheKey(ctx, deb, a1)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := cacheKey(ctx, deb, a1)
	k2, _ := cacheKey(ctx, deb, a2)
	if k1 != again || k1 == k2 {
		t.Fatalf("keys: %s, again %s, other agent %s", k1, again, k2)
	}
	if _, err := cacheKey(ctx, filepath.Join(dir, "absent"), a1); err == nil {
		t.Fatal("a missing kernel package gave a key")
	}
}

// A cached image whose artifacts do not match its manifest (an interrupted build) is not used.
func TestReadManifestChecksSizes(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, guestimage.VmlinuxName, "12345")
	m := guestimage.Manifest{KernelVersion: "6.1", Artifacts: map[string]guestimage.Artifact{guestimage.VmlinuxName: {Size: 5}}}
	data, _ := json.Marshal(m)
	write(t, dir, guestimage.ManifestName, string(data))
	if got, err := readManifest(dir); err != nil || got.KernelVersion != "6.1" {
		t.Fatalf("a complete image: %+v, %v", got, err)
	}
	write(t, dir, guestimage.VmlinuxName, "123")
	if _, err := readManifest(dir); err == nil {
		t.Fatal("a truncated vmlinux was accepted")
	}
}

// WithInit appends an archive whose /init is the given one, leaving the base initrd intact.
func TestWithInit(t *testing.T) {
	dir := t.TempDir()
	var base bytes.Buffer
	if err := guestimage.WriteInitrd(&base, []guestimage.File{{Path: guestimage.InitPath, Mode: 0o755, Data: []byte("agent")}}); err != nil {
		t.Fatal(err)
	}
	img := &Image{Initrd: write(t, dir, "initrd.img", base.String())}
	data, err := os.ReadFile(img.WithInit(t, []byte("test init")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, base.Bytes()) {
		t.Fatal("the base initrd is not kept as the first archive")
	}
	r := cpio.NewReader(bytes.NewReader(data[base.Len():]))
	h, err := r.Next()
	if err != nil || h.Name != "init" {
		t.Fatalf("first entry of the appended archive: %+v, %v", h, err)
	}
	if b, _ := io.ReadAll(r); string(b) != "test init" {
		t.Fatalf("appended /init holds %q", b)
	}
}
