package guestimage

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestDebRelPath(t *testing.T) {
	tests := map[string]string{
		"./boot/vmlinuz-6.1":                 "boot/vmlinuz-6.1",
		"./usr/lib/modules/6.1/kernel/x.ko":  "lib/modules/6.1/kernel/x.ko",
		"/lib/modules/6.1/modules.builtin":   "lib/modules/6.1/modules.builtin",
		"./usr/share/doc/linux/changelog.gz": "usr/share/doc/linux/changelog.gz",
	}
	for in, want := range tests {
		if got := debRelPath(in); got != want {
			t.Errorf("debRelPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDebDataTar(t *testing.T) {
	payload := tarBytes(t, []tarFile{{"./a", []byte("x")}})
	good := fakeDeb(t, []tarFile{{"./a", []byte("x")}}, "", nil)
	noData := arBytes([]tarFile{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", []byte("c")}})
	oddCompression := arBytes([]tarFile{{"data.tar.lzo", []byte("x")}})
	badHeader := append([]byte(arMagic), bytes.Repeat([]byte("z"), arHeaderSize)...)
	tests := []struct {
		name string
		deb  []byte
		want string // error text; "" = success
	}{
		{"plain data.tar", good, ""},
		{"not ar", []byte("<html>"), "not a Debian package"},
		{"no data member", noData, "no data.tar"},
		{"unsupported compression", oddCompression, "unsupported compression"},
		{"corrupt member header", badHeader, "corrupt ar member header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, closeFn, err := debDataTar(bytes.NewReader(tc.deb))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			got, _ := io.ReadAll(r)
			if tc.name == "plain data.tar" && !bytes.Equal(got, payload) {
				t.Fatalf("data.tar: %d bytes, want %d", len(got), len(payload))
			}
		})
	}
}
