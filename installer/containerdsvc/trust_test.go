package containerdsvc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
)

func TestTrustedBinary(t *testing.T) {
	me := os.Geteuid()
	dir := t.TempDir()
	good := filepath.Join(dir, "containerd")
	if err := os.WriteFile(good, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	planted := filepath.Join(open, "containerd")
	if err := os.WriteFile(planted, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stranger := 65534
	if me == stranger {
		stranger = 65533
	}
	proc := func(uid int, exe string) dockerd.Process {
		return dockerd.Process{PID: 42, UID: uid, UIDs: [4]int{uid, uid, uid, uid}, Exe: exe}
	}
	tests := []struct {
		name    string
		p       dockerd.Process
		wantErr string
	}{
		{"trusted", proc(me, good), ""},
		{"another user's process", proc(stranger, good), "runs as uid"},
		{"saved uid of another user", dockerd.Process{PID: 42, UID: me, UIDs: [4]int{me, me, stranger, me}, Exe: good}, "runs as uid"},
		{"binary in a world-writable directory", proc(me, planted), "not safe"},
		{"binary unknown", proc(me, ""), "cannot be read"},
		{"binary gone", proc(me, filepath.Join(dir, "gone")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin, err := trustedBinary(tt.p)
			if tt.name == "binary gone" {
				if err == nil {
					t.Fatalf("a missing binary was trusted: %s", bin)
				}
				return
			}
			if tt.wantErr == "" {
				if err != nil || bin != tt.p.Exe {
					t.Fatalf("trustedBinary = %q, %v; want %q", bin, err, tt.p.Exe)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("trustedBinary error = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}
