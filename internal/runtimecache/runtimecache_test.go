package runtimecache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// write creates the files of a template directory under cache; a nil content skips the file.
func write(t *testing.T, cache, key string, files map[string][]byte) {
	t.Helper()
	dir := filepath.Join(TemplatesDir(cache), key)
	must(t, os.MkdirAll(dir, 0o700))
	for name, data := range files {
		if data != nil {
			must(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
		}
	}
}

func TestTemplates(t *testing.T) {
	created := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	ready := func(key string) []byte {
		return []byte(`{"key":"` + key + `","memoryMiB":2048,"vcpus":2,"created":"2026-12-07T05:00:00Z"}`)
	}
	for _, tc := range []struct {
		name      string
		files     map[string][]byte
		wantReady bool
		wantMem   bool // allocated blocks counted
		wantFail  string
	}{
		{"ready", map[string][]byte{"memory": make([]byte, 64<<10), "state": []byte("s"), "ready": ready("k")}, true, true, ""},
		{"memory deleted", map[string][]byte{"state": []byte("s"), "ready": ready("k")}, false, false, ""},
		{"ready of another key", map[string][]byte{"memory": make([]byte, 64<<10), "ready": ready("other")}, false, true, ""},
		{"damaged ready", map[string][]byte{"memory": make([]byte, 64<<10), "ready": []byte("{")}, false, true, ""},
		{"failed build", map[string][]byte{"failed": []byte("building the VM template: boom\n")}, false, false, "building the VM template: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			write(t, cache, "k", tc.files)
			must(t, os.MkdirAll(filepath.Join(TemplatesDir(cache), ".build-k"), 0o700)) // not a template
			must(t, os.WriteFile(filepath.Join(TemplatesDir(cache), ".lock"), nil, 0o600))
			ts, err := Templates(cache)
			if err != nil || len(ts) != 1 {
				t.Fatalf("%+v, %v", ts, err)
			}
			got := ts[0]
			if got.Key != "k" || got.Ready != tc.wantReady || (got.MemoryBytes >= 64<<10) != tc.wantMem || got.Failed != tc.wantFail {
				t.Errorf("%+v", got)
			}
			if tc.wantReady && (got.MemoryMiB != 2048 || got.VCPUs != 2 || !got.Created.Equal(created) || got.LastUsed.IsZero()) {
				t.Errorf("ready file not read: %+v", got)
			}
		})
	}
}

// The memory file's size is what it takes on disk: a sparse file of 1 GiB with one page written
// takes a page, not a GiB.
func TestTemplateMemoryIsAllocatedBlocks(t *testing.T) {
	cache := t.TempDir()
	write(t, cache, "k", map[string][]byte{"ready": []byte(`{"key":"k"}`)})
	f, err := os.Create(filepath.Join(TemplatesDir(cache), "k", "memory"))
	must(t, err)
	must(t, f.Truncate(1<<30))
	_, err = f.WriteAt(make([]byte, 4096), 0)
	must(t, err)
	must(t, f.Close())
	ts, err := Templates(cache)
	if err != nil || len(ts) != 1 || ts[0].MemoryBytes <= 0 || ts[0].MemoryBytes > 1<<20 {
		t.Errorf("%+v, %v", ts, err)
	}
}

func TestTemplatesWithoutDirectory(t *testing.T) {
	if ts, err := Templates(filepath.Join(t.TempDir(), "absent.cache")); err != nil || ts != nil {
		t.Errorf("%+v, %v", ts, err)
	}
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, cache string) string // returns the path passed to Remove
		wantErr error                                   // nil: no error
		left    []string                                // relative to cache, still there after
		gone    []string
	}{
		{"templates and probes", func(t *testing.T, cache string) string {
			write(t, cache, "k", map[string][]byte{"memory": []byte("m"), "ready": []byte("{}")})
			must(t, os.WriteFile(filepath.Join(cache, "qemu-sandbox-0011223344556677.json"), nil, 0o600))
			must(t, os.WriteFile(filepath.Join(cache, "someone-elses"), nil, 0o600))
			return cache
		}, nil, []string{".", "someone-elses"}, []string{"template", "qemu-sandbox-0011223344556677.json"}},
		{"nothing there", func(t *testing.T, cache string) string { return filepath.Join(cache, "absent.cache") }, nil, []string{"."}, nil},
		{"a link is not followed", func(t *testing.T, cache string) string {
			write(t, cache, "k", map[string][]byte{"memory": []byte("m")})
			link := filepath.Join(t.TempDir(), "link.cache")
			must(t, os.Symlink(cache, link))
			return link
		}, errors.New("not a directory"), []string{"template/k/memory"}, nil},
		{"a build holds the lock", func(t *testing.T, cache string) string {
			write(t, cache, "k", map[string][]byte{"memory": []byte("m")})
			lock, err := os.OpenFile(filepath.Join(TemplatesDir(cache), ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
			must(t, err)
			t.Cleanup(func() { lock.Close() })
			must(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))
			return cache
		}, ErrBuilding, []string{"template/k/memory"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "kd.cache")
			must(t, os.MkdirAll(cache, 0o700))
			_, err := Remove(tc.setup(t, cache))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("err = %v", err)
			case tc.wantErr != nil && err == nil:
				t.Errorf("no error, want %v", tc.wantErr)
			case errors.Is(tc.wantErr, ErrBuilding) && !errors.Is(err, ErrBuilding):
				t.Errorf("err = %v, want %v", err, ErrBuilding)
			}
			for _, p := range tc.left {
				if _, err := os.Lstat(filepath.Join(cache, p)); err != nil {
					t.Errorf("%s was removed", p)
				}
			}
			for _, p := range tc.gone {
				if _, err := os.Lstat(filepath.Join(cache, p)); err == nil {
					t.Errorf("%s is left", p)
				}
			}
		})
	}
}

func TestRemoveRefusesUncleanPaths(t *testing.T) {
	for _, p := range []string{"", "relative.cache", "/", "/tmp/../tmp/x.cache"} {
		if _, err := Remove(p); err == nil {
			t.Errorf("Remove(%q) accepted", p)
		}
	}
}
