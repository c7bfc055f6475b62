package containerinit

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		name  string
		opts  []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{"docker proc", []string{"nosuid", "noexec", "nodev"}, unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV, nil, ""},
		{"docker dev", []string{"nosuid", "strictatime", "mode=755", "size=65536k"}, unix.MS_NOSUID | unix.MS_STRICTATIME, nil, "mode=755,size=65536k"},
		{"docker devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}, unix.MS_NOSUID | unix.MS_NOEXEC, nil, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"volume ro", []string{"rbind", "rprivate", "ro"}, unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, []uintptr{unix.MS_PRIVATE | unix.MS_REC}, ""},
		{"bind then rw clears ro", []string{"bind", "ro", "rw"}, unix.MS_BIND, nil, ""},
		{"clearing flags", []string{"nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime"}, 0, nil, ""},
		{"propagation in order", []string{"shared", "rslave", "private", "unbindable", "runbindable", "slave", "rshared"},
			0, []uintptr{unix.MS_SHARED, unix.MS_SLAVE | unix.MS_REC, unix.MS_PRIVATE, unix.MS_UNBINDABLE, unix.MS_UNBINDABLE | unix.MS_REC, unix.MS_SLAVE, unix.MS_SHARED | unix.MS_REC}, ""},
		{"misc flags", []string{"sync", "dirsync", "remount", "mand", "nodiratime", "relatime", "lazytime", "silent"},
			unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_REMOUNT | unix.MS_MANDLOCK | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_LAZYTIME | unix.MS_SILENT, nil, ""},
		{"runc extensions are not data", []string{"tmpcopyup", "rro", "size=1m"}, 0, nil, "size=1m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseMountOptions(tt.opts)
			if got.flags != tt.flags {
				t.Errorf("flags %#x, want %#x", got.flags, tt.flags)
			}
			if !reflect.DeepEqual(got.propagation, tt.prop) {
				t.Errorf("propagation %#x, want %#x", got.propagation, tt.prop)
			}
			if got.data != tt.data {
				t.Errorf("data %q, want %q", got.data, tt.data)
			}
		})
	}
}

func TestWithDataOption(t *testing.T) {
	tests := []struct{ data, key, value, want string }{
		{"", "newinstance", "", "newinstance"},
		{"mode=0620", "ptmxmode", "0666", "mode=0620,ptmxmode=0666"},
		{"ptmxmode=0000,gid=5", "ptmxmode", "0666", "ptmxmode=0000,gid=5"},
		{"newinstance", "newinstance", "", "newinstance"},
	}
	for _, tt := range tests {
		if got := withDataOption(tt.data, tt.key, tt.value); got != tt.want {
			t.Errorf("withDataOption(%q, %q, %q) = %q, want %q", tt.data, tt.key, tt.value, got, tt.want)
		}
	}
}
