package manifest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

const lockHelperEnv = "KATA_DEPLOY_MANIFEST_LOCK_HELPER"

// heldLock keeps the helper process's lock reachable while it waits to be killed.
var heldLock *Lock

func TestMain(m *testing.M) {
	if path := os.Getenv(lockHelperEnv); path != "" {
		l, err := Acquire(path)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		heldLock = l // an unreferenced Lock's file would be closed by the GC, dropping the flock
		fmt.Println("locked")
		select {} // hold it until killed
	}
	os.Exit(m.Run())
}

func TestRoundTrip(t *testing.T) {
	prefix := t.TempDir()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := New(prefix, "kata", "v1.2.3", now)
	m.AddDir(prefix)
	m.AddDir(filepath.Join(prefix, "bin"))
	m.AddDir(prefix) // recorded once
	m.PutFile(File{Path: filepath.Join(prefix, "bin", "shim"), SHA256: "aa", Size: 3, Mode: 0o755})
	m.PutFile(File{Path: filepath.Join(prefix, "bin", "shim"), SHA256: "bb", Size: 4, Mode: 0o755, PendingSHA256: "cc",
		Previous: &Previous{SHA256: "dd", SavedAs: "/x.orig"}})
	m.Image = &Image{Key: "k", KernelPackage: "/k.deb", KernelSHA256: "ks", AgentSHA256: "as", KernelVersion: "6.1.0-57-amd64"}
	// Change values must survive byte for byte: layout, big numbers, '&' and unicode.
	m.DaemonJSON = &registration.State{Path: "/etc/docker/daemon.json", Backup: "/etc/docker/daemon.json.bak", Changes: []daemonjson.Change{
		{Key: "/runtimes", Before: json.RawMessage("null"), After: json.RawMessage("{}")},
		{Key: "/runtimes/kata", After: json.RawMessage("{\n    \"runtimeType\": \"/a&b/é\", \"n\": 9007199254740993\n  }")},
	}}
	m.Log(now, "shim", "started", nil)
	m.Log(now, "shim", "failed", errors.New("boom"))
	if err := m.Save(now); err != nil {
		t.Fatal(err)
	}
	got, err := Load(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, m)
	}
	if len(got.Files) != 1 || got.Files[0].SHA256 != "bb" || len(got.Dirs) != 2 {
		t.Errorf("files %+v dirs %v", got.Files, got.Dirs)
	}
	f := got.File(filepath.Join(prefix, "bin", "shim"))
	if f == nil || !f.Owns("bb") || !f.Owns("cc") || f.Owns("dd") || f.Owns("") {
		t.Errorf("Owns: %+v", f)
	}
	if fi, err := os.Stat(Path(prefix)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("manifest mode: %v %v", fi, err)
	}
	if err := got.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(prefix); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("after Remove: %v, want ErrNotInstalled", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"damaged", "{not json", "damaged"},
		{"future schema", `{"schemaVersion": 3}`, "schema version 3"},
		{"no schema", `{}`, "schema version 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := t.TempDir()
			if err := os.WriteFile(Path(prefix), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(prefix)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrNotInstalled) {
				t.Errorf("Load = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("empty prefix: %v", err)
	}
}

// A schema 1 manifest (the flat layout) still loads, and is flat.
func TestLoadSchema1(t *testing.T) {
	prefix := t.TempDir()
	old := `{"schemaVersion": 1, "version": "0.1", "prefix": "` + prefix + `", "runtimeName": "kata", "state": "installed",
	  "files": [{"path": "` + prefix + `/bin/shim", "sha256": "aa", "size": 1, "mode": 493}]}`
	if err := os.WriteFile(Path(prefix), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if m.Versioned() || m.Layout != LayoutFlat || m.SchemaVersion != 1 || len(m.Files) != 1 {
		t.Errorf("schema 1 manifest: %+v", m)
	}
	if n := New(prefix, "kata", "v", time.Now()); !n.Versioned() || n.SchemaVersion != SchemaVersion {
		t.Errorf("a new manifest is not versioned: %+v", n)
	}
}

func TestVersionsAndLinks(t *testing.T) {
	m := New(t.TempDir(), "kata", "v", time.Now())
	m.PutVersion(Version{ID: "a"})
	m.PutVersion(Version{ID: "b"})
	m.PutVersion(Version{ID: "a", Ready: true})
	if len(m.Versions) != 2 || !m.FindVersion("a").Ready || m.FindVersion("c") != nil {
		t.Errorf("versions %+v", m.Versions)
	}
	m.DropVersion("a")
	if len(m.Versions) != 1 || m.FindVersion("a") != nil {
		t.Errorf("after drop: %+v", m.Versions)
	}
	m.PutLink(Link{Path: "/p/current", Target: "versions/a"})
	m.PutLink(Link{Path: "/p/current", Target: "versions/a", PendingTarget: "versions/b"})
	l := m.Link("/p/current")
	if len(m.Links) != 1 || !l.Owns("versions/a") || !l.Owns("versions/b") || l.Owns("versions/c") || l.Owns("") {
		t.Errorf("links %+v", m.Links)
	}
	if m.Link("/p/other") != nil {
		t.Error("unknown link found")
	}
}

func TestJournalIsBounded(t *testing.T) {
	m := New(t.TempDir(), "kata", "v", time.Now())
	for i := range maxJournal + 10 {
		m.Log(time.Now(), strconv.Itoa(i), "done", nil)
	}
	if len(m.Journal) != maxJournal || m.Journal[len(m.Journal)-1].Step != strconv.Itoa(maxJournal+9) {
		t.Errorf("journal has %d entries, last %+v", len(m.Journal), m.Journal[len(m.Journal)-1])
	}
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "kata-deploy.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(path)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Acquire = %v, want a refusal naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(path)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
}

// A holder killed with SIGKILL leaves no stale lock.
func TestLockReleasedWhenHolderIsKilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kata-deploy.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("helper: %q", line)
	}
	if _, err := Acquire(path); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("while the helper holds it: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Release()
}
