package dockerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestTrustedBinary(t *testing.T) {
	testreq.Root(t)
	const nobody = 65534
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(dir, 0o755))
	bin := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700))
		must(os.Chown(p, uid, uid))
		must(os.Chmod(p, mode))
		return p
	}
	good := bin("usr/bin/dockerd", 0o755, 0)
	writable := bin("w/dockerd", 0o777, 0)
	users := bin("home/dockerd", 0o755, nobody)
	userDir := bin("nobodys/dockerd", 0o755, 0)
	must(os.Chown(filepath.Dir(userDir), nobody, nobody))
	root := [4]int{}
	tests := []struct {
		name string
		p    Process
		euid int
		want string // in the error; "" for trusted
	}{
		{"root daemon, root binary", Process{PID: 10, Comm: "dockerd", UID: 0, UIDs: root, Exe: good}, 0, ""},
		{"a process named dockerd run by nobody", Process{PID: 11, Comm: "dockerd", UID: nobody, UIDs: [4]int{nobody, nobody, nobody, nobody}, Exe: good}, 0,
			"runs as uid 65534, not root"},
		{"rootless daemon, as root", Process{PID: 12, Comm: "dockerd", UID: 1000, UIDs: [4]int{1000, 1000, 1000, 1000}, Exe: good}, 0,
			"run kata-deploy as uid 1000"},
		{"root only by effective uid", Process{PID: 13, Comm: "dockerd", UID: 0, UIDs: [4]int{nobody, 0, 0, 0}, Exe: good}, 0,
			"runs as uid 65534"},
		{"binary writable by others", Process{PID: 14, Comm: "dockerd", UIDs: root, Exe: writable}, 0, "writable by others"},
		{"binary owned by nobody", Process{PID: 15, Comm: "dockerd", UIDs: root, Exe: users}, 0, "owned by uid 65534"},
		{"binary in nobody's directory", Process{PID: 16, Comm: "dockerd", UIDs: root, Exe: userDir}, 0, filepath.Dir(userDir) + " is owned by uid 65534"},
		{"binary gone", Process{PID: 17, Comm: "dockerd", UIDs: root, Exe: filepath.Join(dir, "usr/bin/gone")}, 0, "is gone"},
		{"binary unreadable", Process{PID: 18, Comm: "dockerd", UIDs: root}, 0, "cannot be read"},
		{"own rootless daemon, own binary", Process{PID: 19, Comm: "dockerd", UID: nobody, UIDs: [4]int{nobody, nobody, nobody, nobody}, Exe: users}, nobody, ""},
		{"another user's daemon", Process{PID: 20, Comm: "dockerd", UID: 1000, UIDs: [4]int{1000, 1000, 1000, 1000}, Exe: good}, nobody,
			"neither root nor you"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TrustedBinary(tt.p, tt.euid)
			if tt.want == "" {
				if err != nil || got != tt.p.Exe {
					t.Fatalf("TrustedBinary = %q, %v; want %q", got, err, tt.p.Exe)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TrustedBinary = %q, %v; want an error with %q", got, err, tt.want)
			}
		})
	}
}
