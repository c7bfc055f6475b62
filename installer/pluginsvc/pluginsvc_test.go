package pluginsvc

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpecValidate(t *testing.T) {
	ok := Spec{Name: "kata-block", Binary: "/opt/kata-deploy/plugins/kata-plugins", StateDir: "/var/lib/x", SocketDir: "/run/docker/plugins"}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string // "" for valid
	}{
		{"default", func(*Spec) {}, ""},
		{"dots and dashes", func(s *Spec) { s.Name = "kata.block_2-x" }, ""},
		{"upper case", func(s *Spec) { s.Name = "Kata" }, "plugin name"},
		{"slash", func(s *Spec) { s.Name = "a/b" }, "plugin name"},
		{"leading dash", func(s *Spec) { s.Name = "-a" }, "plugin name"},
		{"empty", func(s *Spec) { s.Name = "" }, "plugin name"},
		{"relative binary", func(s *Spec) { s.Binary = "kata-plugins" }, "binary"},
		{"space", func(s *Spec) { s.StateDir = "/var/lib/a b" }, "state directory"},
		{"percent", func(s *Spec) { s.StateDir = "/var/%h" }, "state directory"},
		{"dollar", func(s *Spec) { s.Binary = "/opt/$X/kata-plugins" }, "binary"},
		{"unclean", func(s *Spec) { s.SocketDir = "/run/../run" }, "socket directory"},
		{"root", func(s *Spec) { s.StateDir = "/" }, "state directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRenderUnit(t *testing.T) {
	s := Spec{Name: "kata-block", Binary: "/p/plugins/kata-plugins", StateDir: "/var/lib/b", SocketDir: "/run/docker/plugins"}
	for _, tc := range []struct {
		name, template, want, err string
	}{
		{"replaces ExecStart", "[Unit]\nBefore=docker.service\n[Service]\nExecStart=/old\nRestart=on-failure\n",
			"[Unit]\nBefore=docker.service\n[Service]\nExecStart=/p/plugins/kata-plugins --volume-name kata-block --state-dir /var/lib/b --socket-dir /run/docker/plugins --network-name=\nRestart=on-failure\n", ""},
		{"no ExecStart", "[Service]\n", "", "0 ExecStart"},
		{"two ExecStart", "ExecStart=/a\nExecStart=/b\n", "", "2 ExecStart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderUnit([]byte(tc.template), s)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
	if _, err := RenderUnit([]byte("ExecStart=/a\n"), Spec{Name: "x", Binary: "/a b", StateDir: "/s", SocketDir: "/d"}); err == nil {
		t.Error("an unsafe path went into the unit")
	}
}

func TestUnitName(t *testing.T) {
	for name, want := range map[string]string{"kata-block": "kata-plugins.service", "kata-block-e2e": "kata-plugins-kata-block-e2e.service"} {
		if got := UnitName(name); got != want {
			t.Errorf("UnitName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestParseStat(t *testing.T) {
	tail := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n"
	for _, tc := range []struct {
		name, stat string
		start      uint64
		state      byte
		bad        bool
	}{
		{"plain", "123 (kata-plugins) S" + tail, 987654, 'S', false},
		{"parens and spaces in the name", "123 (a) (b c) Z" + tail, 987654, 'Z', false},
		{"truncated", "123 (x) S 1 2 3", 0, 0, true},
		{"no name", "123 S 1", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, state, err := parseStat([]byte(tc.stat))
			if tc.bad != (err != nil) || start != tc.start || state != tc.state {
				t.Errorf("parseStat = %d %q %v", start, state, err)
			}
		})
	}
}

// A started process is alive until stopped; a record with another start time is not it.
func TestProcessLifecycle(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kata-plugins")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Spec{Name: "t", Binary: bin, StateDir: filepath.Join(dir, "state"), SocketDir: dir}
	if err := s.Validate(); err != nil {
		t.Skipf("the test's temporary directory is not a plain path: %v", err)
	}
	p, err := StartProcess(s, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), "/proc", time.Second)
	if !p.Alive("/proc") || p.Check("/proc")() != nil {
		t.Fatal("started process not alive")
	}
	if other := (Process{PID: p.PID, StartTime: p.StartTime + 1}); other.Alive("/proc") {
		t.Error("a process with another start time counts as the recorded one")
	}
	if fi, err := os.Stat(filepath.Join(dir, "log")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log: %v %v", fi, err)
	}
	if err := p.Stop(context.Background(), "/proc", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Alive("/proc") || p.Check("/proc")() == nil {
		t.Error("stopped process still alive")
	}
}

func TestWaitServing(t *testing.T) {
	dir, err := os.MkdirTemp("", "ps")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "p.sock")
	if err := WaitServing(context.Background(), sock, 200*time.Millisecond, nil); err == nil {
		t.Fatal("nothing serves, yet WaitServing succeeded")
	}
	gone := func() error { return ErrExited }
	if err := WaitServing(context.Background(), sock, time.Minute, gone); err != ErrExited {
		t.Fatalf("a dead service: %v", err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := WaitServing(context.Background(), sock, time.Second, nil); err != nil || !Reachable(sock) {
		t.Fatalf("served socket: %v", err)
	}
}

func TestSystemctlCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(Systemctl) error
		out  string
		want []string
		err  bool
	}{
		{"enable", func(sc Systemctl) error { return sc.Enable(context.Background(), "u.service", false) }, "",
			[]string{"daemon-reload", "enable u.service", "start u.service"}, false},
		{"enable restart", func(sc Systemctl) error { return sc.Enable(context.Background(), "u.service", true) }, "",
			[]string{"daemon-reload", "enable u.service", "restart u.service"}, false},
		{"disable unknown unit", func(sc Systemctl) error { return sc.Disable(context.Background(), "u.service") },
			"Failed to disable unit: Unit file u.service does not exist.", []string{"disable --now u.service"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			sc := Systemctl(func(_ context.Context, args ...string) ([]byte, error) {
				calls = append(calls, strings.Join(args, " "))
				if tc.out != "" {
					return []byte(tc.out), os.ErrNotExist
				}
				return nil, nil
			})
			if err := tc.do(sc); (err != nil) != tc.err || strings.Join(calls, "|") != strings.Join(tc.want, "|") {
				t.Errorf("calls %q, err %v", calls, err)
			}
		})
	}
	sc := Systemctl(func(context.Context, ...string) ([]byte, error) { return []byte("4242\n"), nil })
	if pid, err := sc.MainPID(context.Background(), "u"); pid != 4242 || err != nil {
		t.Errorf("MainPID = %d %v", pid, err)
	}
}
