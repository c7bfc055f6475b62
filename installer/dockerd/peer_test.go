package dockerd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The test process listens, so the peer credentials must name the test process.
func TestPeerPIDSelf(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, err := PeerPID(sock)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("PeerPID = %d, want %d (this process)", pid, os.Getpid())
	}
}

// Another process listens: its pid, not ours, must come back.
func TestPeerPIDOtherProcess(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	cmd := startFakeDockerd(t, "listen="+sock, nil)
	pid, err := PeerPID(sock)
	if err != nil {
		t.Fatal(err)
	}
	if pid != cmd.Process.Pid {
		t.Errorf("PeerPID = %d, want the listener %d", pid, cmd.Process.Pid)
	}
}

func TestPeerPIDErrors(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing", filepath.Join(dir, "missing.sock"), "is Docker running?"},
		{"stale socket file", stale, "nothing listens on"},
		{"not a socket", regular, "nothing listens on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PeerPID(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("err = %v, want it to name %s and contain %q", err, tt.path, tt.want)
			}
		})
	}
}
