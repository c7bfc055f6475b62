package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
)

func TestWaitingClone(t *testing.T) {
	oldCache, oldTimeout := cacheDir, poolFillTimeout
	t.Cleanup(func() { cacheDir, poolFillTimeout = oldCache, oldTimeout })
	cacheDir, poolFillTimeout = t.TempDir(), 300*time.Millisecond
	pool := runtimecache.PoolDir(cacheDir)
	slot := func(name string, files map[string]string) {
		for f, content := range files {
			p := filepath.Join(pool, "key", name, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Nothing waits: the error says so and carries the fill log.
	slot("starting", map[string]string{runtimecache.SlotVM + "/qemu.pid": "41\n"})
	slot("taken", map[string]string{runtimecache.SlotTaken: "/run/x\n", runtimecache.SlotVM + "/qemu.pid": "42\n"})
	if err := os.WriteFile(filepath.Join(pool, "fill.log"), []byte("adding a clone to the pool: boom\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := waitingClone(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no clone waits") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("waitingClone with none ready = %v; want an error with the fill log", err)
	}

	// A ready clone: its QEMU's pid.
	slot("ready", map[string]string{runtimecache.SlotReady: "", runtimecache.SlotVM + "/qemu.pid": "43\n"})
	if pid, err := waitingClone(context.Background()); err != nil || pid != 43 {
		t.Errorf("waitingClone = %d, %v; want 43", pid, err)
	}
}
