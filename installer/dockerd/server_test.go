package dockerd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dockerd listens itself: the peer credentials name it.
func TestFindServerDirect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	cmd := startFakeDockerd(t, "listen="+sock, nil)
	s, err := FindServer("/proc", sock)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.PID != cmd.Process.Pid || s.ListenerPID != cmd.Process.Pid || s.Process.Comm != "dockerd" {
		t.Errorf("got %+v, want pid %d", s, cmd.Process.Pid)
	}
	if loc := ResolveConfigFile(s.Process); loc.Path != "/etc/docker/test.json" {
		t.Errorf("config of the fake dockerd = %+v", loc)
	}
}

// Socket activation: another process (here the test, in production systemd) creates and listens
// on the socket and hands it to dockerd. SO_PEERCRED names the creator; the server is the dockerd
// that holds the listening socket, not a decoy dockerd that does not.
func TestFindServerSocketActivation(t *testing.T) {
	if os.Geteuid() != 0 {
		// Same-user processes are readable without root, so this still runs; say what differs.
		t.Log("not root: only processes of this user can be inspected")
	}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	decoy := startFakeDockerd(t, "hold", nil)
	server := startFakeDockerd(t, "hold", nil, lf)
	s, err := FindServer("/proc", sock)
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenerPID != os.Getpid() {
		t.Errorf("ListenerPID = %d, want the creator %d", s.ListenerPID, os.Getpid())
	}
	if s.Process.PID != server.Process.Pid {
		t.Errorf("server = %d, want %d (decoy is %d)", s.Process.PID, server.Process.Pid, decoy.Process.Pid)
	}
	if !strings.Contains(s.How, "holds the listening socket") {
		t.Errorf("How = %q", s.How)
	}
}

// Nobody named dockerd holds the socket and its creator is not systemd: refuse to guess.
func TestFindServerNotDockerd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "podman.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	startFakeDockerd(t, "hold", nil) // an unrelated dockerd must not be picked
	_, err = FindServer("/proc", sock)
	if err == nil || !strings.Contains(err.Error(), "not by dockerd") {
		t.Errorf("err = %v, want a refusal naming the non-dockerd listener", err)
	}
}

func TestFindServerNoSocket(t *testing.T) {
	if _, err := FindServer("/proc", filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Error("want an error for a missing socket")
	}
}

func TestListeningInodes(t *testing.T) {
	dir := t.TempDir()
	// A /proc/PID/net/unix excerpt: a connected socket, a listener on /run/docker.sock, an
	// abstract socket, and a listener whose path contains a space.
	writeFixture(t, filepath.Join(dir, "1/net/unix"), `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000003 00000000 00000000 0001 03 20001 /run/docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 20002 /run/docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 20003 @/containerd-shim/abc.sock
0000000000000000: 00000002 00000000 00010000 0001 01 20004 /run/my docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 20005
`)
	tests := []struct {
		sock string
		want string
	}{
		{"/run/docker.sock", "20002"},
		{"/run/my docker.sock", "20004"},
		{"/run/other.sock", ""},
	}
	for _, tt := range tests {
		got := listeningInodes(dir, 1, tt.sock)
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		if strings.Join(keys, ",") != tt.want {
			t.Errorf("%s: inodes %v, want %q", tt.sock, keys, tt.want)
		}
	}
	// Without a per-process view, the global one is used.
	writeFixture(t, filepath.Join(dir, "net/unix"), "Num RefCount Protocol Flags Type St Inode Path\n0: 2 0 00010000 0001 01 777 /run/docker.sock\n")
	if got := listeningInodes(dir, 2, "/run/docker.sock"); !got["777"] {
		t.Errorf("fallback to net/unix: %v", got)
	}
}
