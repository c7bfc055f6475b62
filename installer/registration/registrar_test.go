package registration_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/fakedocker"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

const name = "kata"

var entry = registration.Entry("/opt/kata-deploy/bin/containerd-shim-kata-v2", "/opt/kata-deploy/share/defaults/configuration-qemu.toml")

type env struct {
	t        *testing.T
	path     string
	daemon   *fakedocker.Daemon
	reg      *registration.Registrar
	st       registration.State
	saved    []registration.State
	warnings []string
}

// newEnv makes a daemon.json with content (nil: no file) and a fake daemon that has loaded it.
func newEnv(t *testing.T, content []byte) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, path: filepath.Join(dir, "daemon.json")}
	if content != nil {
		if err := os.WriteFile(e.path, content, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	e.daemon = &fakedocker.Daemon{ConfigPath: e.path, StateDir: dir}
	if err := e.daemon.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.reg = &registration.Registrar{
		Daemon: e.daemon,
		Save: func(s *registration.State) error {
			e.saved = append(e.saved, *s)
			return nil
		},
		Warn: func(s string) { e.warnings = append(e.warnings, s) },
		Now:  func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	return e
}

func (e *env) file() []byte {
	e.t.Helper()
	data, err := os.ReadFile(e.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

func (e *env) register(setDefault, force bool) error {
	e.t.Helper()
	edit, err := registration.PlanRegister(e.path, name, entry, setDefault, force)
	if err != nil {
		return err
	}
	return e.reg.Register(context.Background(), &e.st, edit, name, setDefault)
}

func (e *env) loaded() bool {
	names, _, _ := e.daemon.Runtimes(context.Background())
	return slices.Contains(names, name)
}

func TestRegisterUnregisterRestoresBytes(t *testing.T) {
	tests := []struct {
		name       string
		content    []byte // nil: no file
		setDefault bool
	}{
		{"missing file", nil, false},
		{"empty object", []byte("{}\n"), false},
		{"empty file", []byte{}, false},
		{"spaced empty object", []byte("{ }"), false},
		{"runtimes null", []byte("{\"runtimes\": null}\n"), false},
		{"other keys, no runtimes", []byte("{\n  \"debug\": true,\n  \"n\": 9007199254740993\n}\n"), false},
		{"other runtimes", []byte("{\n\t\"runtimes\": {\n\t\t\"crun\": {\"path\": \"/usr/bin/crun\"}\n\t}\n}"), false},
		{"as default, no key before", []byte("{}\n"), true},
		{"as default, replacing runc", []byte("{\"default-runtime\": \"runc\", \"runtimes\": {}}"), true},
		{"utf-8 bom", []byte("\xef\xbb\xbf{\"debug\": false}\n"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.content)
			if err := e.register(tt.setDefault, false); err != nil {
				t.Fatal(err)
			}
			if !e.loaded() {
				t.Fatal("the daemon does not list the runtime after Register")
			}
			if _, def, _ := e.daemon.Runtimes(context.Background()); tt.setDefault && def != name {
				t.Errorf("default = %q", def)
			}
			if tt.content == nil && !e.st.Created {
				t.Error("a created file is not recorded as created")
			}
			if tt.content != nil && e.st.Backup == "" {
				t.Error("no backup of an existing file")
			}
			if fi, err := os.Stat(e.path); err == nil && tt.content != nil && fi.Mode().Perm() != 0o640 {
				t.Errorf("mode changed to %v", fi.Mode())
			}
			res, err := e.reg.Unregister(context.Background(), &e.st, name)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.file(); !bytes.Equal(got, tt.content) || (tt.content == nil) != (got == nil) {
				t.Errorf("after uninstall the file is %q, want %q", got, tt.content)
			}
			if e.loaded() {
				t.Error("the daemon still lists the runtime")
			}
			if _, def, _ := e.daemon.Runtimes(context.Background()); def != "runc" {
				t.Errorf("default after uninstall = %q", def)
			}
			if len(res.Kept) != 0 || e.st.Registered() || e.st.Backup != "" {
				t.Errorf("result %+v, state %+v", res, e.st)
			}
			if backups, _ := filepath.Glob(e.path + ".kata-deploy-*"); len(backups) != 0 {
				t.Errorf("backups left: %v", backups)
			}
		})
	}
}

func TestRegisterTwiceChangesNothing(t *testing.T) {
	e := newEnv(t, []byte("{}\n"))
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	before, reloads, saves := e.file(), e.daemon.State().Reloads, len(e.saved)
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.file(), before) || e.daemon.State().Reloads != reloads || len(e.saved) != saves {
		t.Errorf("second Register wrote, reloaded (%d -> %d) or saved (%d -> %d)", reloads, e.daemon.State().Reloads, saves, len(e.saved))
	}
}

// The file has the entry but the daemon was never reloaded (a run killed in between): the rerun
// reloads without writing.
func TestRegisterReloadsWhenDaemonLacksRuntime(t *testing.T) {
	e := newEnv(t, []byte("{}\n"))
	e.reg.Checkpoint = func(cp string) {
		if cp == registration.CheckpointWritten {
			panic(cp)
		}
	}
	crash(t, func() { _ = e.register(false, false) })
	if e.loaded() {
		t.Fatal("loaded before any reload")
	}
	e.reg.Checkpoint = nil
	if err := registration.Reconcile(&e.st); err != nil {
		t.Fatal(err)
	}
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	if !e.loaded() || len(e.st.Changes) != 2 {
		t.Errorf("loaded %v, changes %d", e.loaded(), len(e.st.Changes))
	}
}

func TestRollbackWhenDaemonDoesNotLoadRuntime(t *testing.T) {
	orig := []byte("{\"debug\": true}\n")
	tests := []struct {
		name  string
		setup func(*fakedocker.Daemon)
		want  string
	}{
		{"runtime ignored", func(d *fakedocker.Daemon) { d.HideRuntime = name }, "does not list runtime"},
		{"reload refused", func(d *fakedocker.Daemon) { d.FailReload = true }, "reload refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orig)
			tt.setup(e.daemon)
			err := e.register(false, false)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "restored") {
				t.Fatalf("err = %v, want %q and a word that the file was restored", err, tt.want)
			}
			if got := e.file(); !bytes.Equal(got, orig) {
				t.Errorf("file after rollback = %q, want %q", got, orig)
			}
			if e.st.Registered() {
				t.Errorf("state still records changes: %+v", e.st)
			}
		})
	}
}

func TestValidationFailureWritesNothing(t *testing.T) {
	orig := []byte("{}\n")
	e := newEnv(t, orig)
	e.daemon.ValidateErr, e.daemon.ValidateReject = errors.New("the following directives don't match any configuration option: runtimes"), "runtimes"
	err := e.register(false, false)
	if err == nil || !strings.Contains(err.Error(), "dockerd would refuse") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(e.file(), orig) || len(e.saved) != 0 || e.st.Backup != "" {
		t.Errorf("something was written: file %q, saves %d, state %+v", e.file(), len(e.saved), e.st)
	}
}

// A validator that rejects the current file too is not judging the change: warn and go on.
func TestValidatorRejectingEverythingIsSkipped(t *testing.T) {
	e := newEnv(t, []byte("{}\n"))
	e.daemon.ValidateErr, e.daemon.ValidateReject = errors.New("userland-proxy-path is not set"), "{"
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	if !e.loaded() || len(e.warnings) != 1 || !strings.Contains(e.warnings[0], "skipping validation") {
		t.Errorf("loaded %v, warnings %q", e.loaded(), e.warnings)
	}
}

func TestInvalidJSONIsReportedWithPosition(t *testing.T) {
	orig := []byte("{\n  \"debug\": true,\n}\n")
	e := newEnv(t, []byte("{}"))
	if err := os.WriteFile(e.path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.register(false, false)
	var se *daemonjson.SyntaxError
	if !errors.As(err, &se) || se.Line != 3 || !strings.Contains(err.Error(), e.path) {
		t.Fatalf("err = %v, want a syntax error on line 3 naming the file", err)
	}
	if !bytes.Equal(e.file(), orig) {
		t.Error("the file changed")
	}
}

func TestConflictAndForce(t *testing.T) {
	orig := []byte(`{"runtimes": {"kata": {"runtimeType": "io.containerd.kata.v2"}}}`)
	e := newEnv(t, orig)
	if err := e.register(false, false); !errors.Is(err, daemonjson.ErrRuntimeConflict) {
		t.Fatalf("err = %v, want ErrRuntimeConflict", err)
	}
	if err := e.register(false, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Unregister(context.Background(), &e.st, name); err != nil {
		t.Fatal(err)
	}
	if got := e.file(); !bytes.Equal(got, orig) {
		t.Errorf("the forced-over entry was not restored: %q", got)
	}
	if !e.loaded() {
		t.Error("the restored entry is not loaded")
	}
}

// Edits made after install survive uninstall; an edited entry of ours is kept and reported.
func TestUserEditsSurvive(t *testing.T) {
	e := newEnv(t, []byte("{\n  \"debug\": true\n}\n"))
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(e.file(), []byte(`"debug": true`), []byte(`"debug": false, "log-level": "warn"`), 1)
	if err := os.WriteFile(e.path, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Unregister(context.Background(), &e.st, name); err != nil {
		t.Fatal(err)
	}
	if got, want := string(e.file()), "{\n  \"debug\": false, \"log-level\": \"warn\"\n}\n"; got != want {
		t.Errorf("file = %q, want %q", got, want)
	}

	e = newEnv(t, []byte("{}\n"))
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	mine := bytes.Replace(e.file(), []byte("configuration-qemu.toml"), []byte("mine.toml"), 1)
	if err := os.WriteFile(e.path, mine, 0o640); err != nil {
		t.Fatal(err)
	}
	res, err := e.reg.Unregister(context.Background(), &e.st, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 2 || !bytes.Equal(e.file(), mine) || len(e.warnings) != 1 {
		t.Errorf("kept %+v, warnings %q, file %q", res.Kept, e.warnings, e.file())
	}
}

func TestWithoutDaemon(t *testing.T) {
	orig := []byte("{}\n")
	e := newEnv(t, orig)
	e.reg.Daemon = nil
	if err := e.register(false, false); err != nil {
		t.Fatal(err)
	}
	if len(e.warnings) != 1 || !strings.Contains(e.warnings[0], "not running") {
		t.Errorf("warnings %q", e.warnings)
	}
	if _, err := e.reg.Unregister(context.Background(), &e.st, name); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.file(), orig) {
		t.Errorf("file %q", e.file())
	}
}

// crash runs f, which must stop by panicking at a checkpoint (the in-process stand-in for SIGKILL).
func crash(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("the checkpoint was not reached")
		}
	}()
	f()
}

// A run stopped at any checkpoint leaves a valid file; install then uninstall, or a plain
// uninstall, from there ends with the original bytes.
func TestCrashAtEveryCheckpoint(t *testing.T) {
	orig := []byte("{\n  \"debug\": true\n}\n")
	registerPoints := []string{registration.CheckpointJournaled, registration.CheckpointWritten}
	unregisterPoints := []string{registration.CheckpointUnloadWritten, registration.CheckpointUnloaded, registration.CheckpointReverted}
	for _, cp := range registerPoints {
		for _, rerunInstall := range []bool{false, true} {
			t.Run(cp+map[bool]string{false: "/uninstall", true: "/install"}[rerunInstall], func(t *testing.T) {
				e := newEnv(t, orig)
				e.reg.Checkpoint = func(got string) {
					if got == cp {
						panic(got)
					}
				}
				crash(t, func() { _ = e.register(false, false) })
				e.reg.Checkpoint = nil
				st := e.saved[len(e.saved)-1] // what the manifest holds
				e.st = st
				if _, err := daemonjson.Parse(e.file()); err != nil {
					t.Fatalf("file invalid after the crash: %v", err)
				}
				if rerunInstall {
					if err := registration.Reconcile(&e.st); err != nil {
						t.Fatal(err)
					}
					if err := e.register(false, false); err != nil {
						t.Fatal(err)
					}
					if !e.loaded() {
						t.Fatal("rerun install did not load the runtime")
					}
				}
				if _, err := e.reg.Unregister(context.Background(), &e.st, name); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(e.file(), orig) || e.loaded() {
					t.Errorf("file %q, loaded %v", e.file(), e.loaded())
				}
			})
		}
	}
	for _, cp := range unregisterPoints {
		t.Run(cp, func(t *testing.T) {
			e := newEnv(t, orig)
			if err := e.register(false, false); err != nil {
				t.Fatal(err)
			}
			e.reg.Checkpoint = func(got string) {
				if got == cp {
					panic(got)
				}
			}
			crash(t, func() { _, _ = e.reg.Unregister(context.Background(), &e.st, name) })
			e.reg.Checkpoint = nil
			if _, err := daemonjson.Parse(e.file()); err != nil {
				t.Fatalf("file invalid after the crash: %v", err)
			}
			if _, err := e.reg.Unregister(context.Background(), &e.st, name); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.file(), orig) || e.loaded() {
				t.Errorf("file %q, loaded %v", e.file(), e.loaded())
			}
		})
	}
}

func TestDiffAndStanza(t *testing.T) {
	e := newEnv(t, []byte("{}\n"))
	edit, err := registration.PlanRegister(e.path, name, entry, false, false)
	if err != nil {
		t.Fatal(err)
	}
	d := edit.Diff()
	for _, want := range []string{"--- a" + e.path, "+++ b" + e.path, "-{}", `+    "kata": {`, "containerd-shim-kata-v2"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if !bytes.Equal(e.file(), []byte("{}\n")) {
		t.Error("planning wrote the file")
	}
	s := registration.Stanza(name, entry, true)
	for _, want := range []string{`"default-runtime": "kata"`, `"runtimeType": "/opt/kata-deploy/bin/containerd-shim-kata-v2"`, `"ConfigPath"`} {
		if !strings.Contains(s, want) {
			t.Errorf("stanza lacks %q:\n%s", want, s)
		}
	}
}
