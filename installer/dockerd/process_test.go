package dockerd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadProcessFixtures(t *testing.T) {
	tests := []struct {
		pid      int
		wantComm string
		wantArgs []string
		wantUID  int
		wantEnv  map[string]string // a subset that must be present; nil means Env must be nil
	}{
		{1001, "dockerd", []string{"/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"}, 0,
			map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify", "SYSTEMD_EXEC_PID": "1001"}},
		{1004, "dockerd", []string{"dockerd"}, 1000,
			map[string]string{"XDG_CONFIG_HOME": "/home/alice/.cfg", "ROOTLESSKIT_STATE_DIR": "/tmp/rootlesskit2954081663"}},
		{1006, "dockerd", []string{"/snap/docker/2915/bin/dockerd", "--group", "docker", "--exec-root=/run/snap.docker",
			"--data-root=/var/snap/docker/common/var-lib-docker", "--pidfile=/run/snap.docker/docker.pid",
			"--config-file=/var/snap/docker/2915/config/daemon.json"}, 0, map[string]string{"SNAP_NAME": "docker"}},
		{1009, "com.docker.back", []string{"/opt/docker-desktop/bin/com.docker.backend"}, 1000, map[string]string{"HOME": "/home/alice"}},
		{1011, "dockerd", []string{"dockerd"}, 1000, nil},
	}
	for _, tt := range tests {
		p, err := ReadProcess("testdata/proc", tt.pid)
		if err != nil {
			t.Fatalf("pid %d: %v", tt.pid, err)
		}
		if p.PID != tt.pid || p.Comm != tt.wantComm || p.UID != tt.wantUID || !reflect.DeepEqual(p.Args, tt.wantArgs) {
			t.Errorf("pid %d: got %+v", tt.pid, p)
		}
		if tt.wantEnv == nil && p.Env != nil {
			t.Errorf("pid %d: Env = %v, want nil (environ unreadable)", tt.pid, p.Env)
		}
		for k, v := range tt.wantEnv {
			if p.Env[k] != v {
				t.Errorf("pid %d: Env[%s] = %q, want %q", tt.pid, k, p.Env[k], v)
			}
		}
		if p.Exe != "" || p.Cwd != "" {
			t.Errorf("pid %d: fixtures have no exe/cwd links, got %q %q", tt.pid, p.Exe, p.Cwd)
		}
	}
}

func TestReadProcessErrors(t *testing.T) {
	dir := t.TempDir()
	writeFixture(t, filepath.Join(dir, "7/status"), "Name:\tx\n")
	writeFixture(t, filepath.Join(dir, "7/cmdline"), "x\x00")
	writeFixture(t, filepath.Join(dir, "8/status"), "Name:\tx\nUid:\t0\t0\t0\t0\n") // no cmdline
	tests := []struct {
		pid  int
		want string
	}{
		{0, "invalid pid"},
		{-3, "invalid pid"},
		{99, "does not exist"},
		{7, "no Uid line"},
		{8, "command line"},
	}
	for _, tt := range tests {
		if _, err := ReadProcess(dir, tt.pid); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pid %d: err = %v, want %q", tt.pid, err, tt.want)
		}
	}
}

func writeFixture(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A real process started with a known command line and environment, read from the real /proc.
func TestReadProcessLive(t *testing.T) {
	cmd := startFakeDockerd(t, "hold", []string{"KATA_DEPLOY_TEST_MARK=a=b c"})
	p, err := ReadProcess("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Comm != "dockerd" {
		t.Errorf("Comm = %q, want dockerd (started through a link of that name)", p.Comm)
	}
	if !reflect.DeepEqual(p.Args, cmd.Args) {
		t.Errorf("Args = %q, want %q", p.Args, cmd.Args)
	}
	if p.Env["KATA_DEPLOY_TEST_MARK"] != "a=b c" {
		t.Errorf("Env[KATA_DEPLOY_TEST_MARK] = %q", p.Env["KATA_DEPLOY_TEST_MARK"])
	}
	if p.UID != os.Geteuid() {
		t.Errorf("UID = %d, want %d", p.UID, os.Geteuid())
	}
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	if p.Exe != self {
		t.Errorf("Exe = %q, want %q", p.Exe, self)
	}
	wd, _ := os.Getwd()
	if p.Cwd != wd {
		t.Errorf("Cwd = %q, want %q", p.Cwd, wd)
	}
}

func TestFindDockerdProcessesFixtures(t *testing.T) {
	procs, err := FindDockerdProcesses("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		pids = append(pids, p.PID)
	}
	want := []int{1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1011} // not Desktop's backend, not containerd
	if !reflect.DeepEqual(pids, want) {
		t.Errorf("pids = %v, want %v", pids, want)
	}
	if _, err := FindDockerdProcesses(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing proc root must be an error")
	}
}

func TestFindDockerdProcessesLive(t *testing.T) {
	cmd := startFakeDockerd(t, "hold", nil)
	procs, err := FindDockerdProcesses("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.PID == cmd.Process.Pid {
			return
		}
	}
	t.Errorf("the fake dockerd %d is not among %+v", cmd.Process.Pid, procs)
}
