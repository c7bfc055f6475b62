package containerdsvc

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestConfigFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"containerd"}, ""},
		{[]string{"containerd", "--config", "/a.toml"}, "/a.toml"},
		{[]string{"containerd", "-c", "/b.toml", "--log-level", "debug"}, "/b.toml"},
		{[]string{"containerd", "--config=/c.toml"}, "/c.toml"},
		{[]string{"containerd", "--log-level", "info", "-c=/d.toml"}, "/d.toml"},
		{[]string{"containerd", "--config"}, ""},
		{[]string{"containerd", "--", "--config", "/e.toml"}, ""},
	}
	for _, tt := range tests {
		if got := ConfigFlag(tt.args); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestParseMajor(t *testing.T) {
	tests := []struct {
		out     string
		want    int
		wantErr bool
	}{
		{"containerd github.com/containerd/containerd/v2 2.4.2+unknown \n", 2, false},
		{"containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", 1, false},
		{"containerd github.com/containerd/containerd v1.6.20 abc\n", 1, false},
		{"containerd dev\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMajor(tt.out)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%q: %d, %v", tt.out, got, err)
		}
	}
}

func TestUnitOfCgroup(t *testing.T) {
	tests := []struct{ cgroup, want string }{
		{"0::/system.slice/containerd.service\n", "containerd.service"},
		{"12:pids:/system.slice/k3s.service\n1:name=systemd:/system.slice/k3s.service\n", "k3s.service"},
		{"0::/user.slice/user-0.slice/session-3.scope\n", ""},
		{"0::/\n", ""},
	}
	for _, tt := range tests {
		if got := UnitOfCgroup(tt.cgroup); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.cgroup, got, tt.want)
		}
	}
}

// A socket served by this test process stands in for containerd's.
func TestFindAndRestartOutsideSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := Find(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.PID != os.Getpid() || d.Config != DefaultConfig || d.Binary == "" || !d.Serving() {
		t.Errorf("found %+v", d)
	}
	if _, err := Find(sock, "/elsewhere/config.toml"); err == nil || !strings.Contains(err.Error(), "reads "+DefaultConfig) {
		t.Errorf("a config override that is not the daemon's: %v", err)
	}
	started := d.StartedAt()
	if started.IsZero() || started.After(time.Now()) || time.Since(started) > time.Hour {
		t.Errorf("started at %v", started)
	}
	r, err := d.Restart(context.Background())
	if err != nil || !r.Pending || r.Restarted || !strings.Contains(r.Hint, "not run by systemd") {
		t.Errorf("restart outside systemd: %+v %v", r, err)
	}
}

func TestNotRunning(t *testing.T) {
	d, err := Find(filepath.Join(t.TempDir(), "none.sock"), "/etc/x/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if d.Running() || d.Config != "/etc/x/config.toml" || !d.StartedAt().IsZero() || d.Serving() {
		t.Errorf("%+v", d)
	}
	r, err := d.Restart(context.Background())
	if err != nil || r.Pending || r.Restarted || !strings.Contains(r.Hint, "not running") {
		t.Errorf("restart of nothing: %+v %v", r, err)
	}
}

// Dump and MajorVersion against a real containerd binary, when there is one.
func TestDumpWithRealContainerd(t *testing.T) {
	bin := filepath.Join(os.Getenv("KATA_TEST_ENGINE_BIN"), "containerd")
	if _, err := os.Stat(bin); err != nil {
		testreq.Skipf(t, "no containerd binary at $KATA_TEST_ENGINE_BIN (source the test engine's env: . \"$(hack/engine.sh env)\")")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("version = 3\nroot = '"+dir+"/root'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Binary: bin, Config: cfg}
	if major, err := d.MajorVersion(context.Background()); err != nil || major != 2 {
		t.Errorf("major %d, %v", major, err)
	}
	out, err := d.Dump(context.Background())
	if err != nil || !strings.Contains(string(out), dir+"/root") {
		t.Errorf("dump: %v\n%s", err, out)
	}
	if err := os.WriteFile(cfg, []byte("version = 3\nroot = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dump(context.Background()); err == nil {
		t.Error("an invalid configuration dumped")
	}
}
