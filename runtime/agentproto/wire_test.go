package agentproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadMessageLeavesRawBytes(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, Request{Op: OpStdio, Container: "c", Stream: StreamStdin}); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("raw\nbytes{\"op\":1}")
	br := bufio.NewReader(&buf)
	var req Request
	if err := ReadMessage(br, &req); err != nil {
		t.Fatal(err)
	}
	if req.Op != OpStdio || req.Container != "c" || req.Stream != StreamStdin {
		t.Errorf("got %+v", req)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "raw\nbytes{\"op\":1}" {
		t.Errorf("raw bytes after the header were consumed: %q", rest)
	}
}

func TestReadMessageErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  error
	}{
		{"empty", "", io.EOF},
		{"no newline", `{"op":"ping"}`, io.ErrUnexpectedEOF},
		{"too large", strings.Repeat("x", MaxMessageSize+10) + "\n", ErrMessageTooLarge},
		{"not json", "hello\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req Request
			err := ReadMessage(bufio.NewReader(strings.NewReader(tt.input)), &req)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadMessageLongLine(t *testing.T) {
	// Longer than bufio's buffer but within the limit.
	long := strings.Repeat("a", 100_000)
	var buf bytes.Buffer
	if err := WriteMessage(&buf, Response{Error: long}); err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := ReadMessage(bufio.NewReader(&buf), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error != long {
		t.Errorf("long message mangled (%d bytes)", len(resp.Error))
	}
}

func TestShareValidate(t *testing.T) {
	tests := []struct {
		share Share
		ok    bool
	}{
		{Share{Type: Share9P, Tag: "rootfs", GuestPath: "/run/kata/shared/c1"}, true},
		{Share{Type: ShareVirtioFS, Tag: "kata-fs.0", GuestPath: "/run/x"}, true},
		{Share{Type: "nfs", Tag: "rootfs", GuestPath: "/run/x"}, false},
		{Share{Type: ShareBlock, Tag: "kblk0", GuestPath: "/run/b", FSType: "ext4", ReadOnly: true}, true},
		{Share{Type: ShareBlock, Tag: "kblk0", GuestPath: "/run/b", FSType: "vfat"}, false},
		{Share{Type: ShareBlock, Tag: "kblk0", GuestPath: "/run/b"}, false},
		{Share{Type: Share9P, Tag: "", GuestPath: "/run/x"}, false},
		{Share{Type: Share9P, Tag: "a,trans=fd", GuestPath: "/run/x"}, false},
		{Share{Type: Share9P, Tag: strings.Repeat("t", 36), GuestPath: "/run/x"}, true},
		{Share{Type: Share9P, Tag: "kataShared", GuestPath: "/run/x", Subdir: "c"}, true},
		{Share{Type: Share9P, Tag: "kataShared", GuestPath: "/run/x", Subdir: ".."}, false},
		{Share{Type: Share9P, Tag: "kataShared", GuestPath: "/run/x", Subdir: "."}, false},
		{Share{Type: Share9P, Tag: "kataShared", GuestPath: "/run/x", Subdir: "a/b"}, false},
		{Share{Type: ShareBlock, Tag: "kblk0", GuestPath: "/run/b", FSType: "ext4", Subdir: "c"}, false},
		{Share{Type: Share9P, Tag: strings.Repeat("t", 37), GuestPath: "/run/x"}, false},
		{Share{Type: Share9P, Tag: "t", GuestPath: "run/x"}, false},
		{Share{Type: Share9P, Tag: "t", GuestPath: "/run/../x"}, false},
		{Share{Type: Share9P, Tag: "t", GuestPath: "/"}, false},
		{Share{Type: Share9P, Tag: "t", GuestPath: "/run/x/"}, false},
	}
	for _, tt := range tests {
		err := tt.share.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%+v: got %v, want ok=%v", tt.share, err, tt.ok)
		}
	}
}

func TestDeviceValidate(t *testing.T) {
	for d, ok := range map[Device]bool{
		{Tag: "kdev0", ContainerPath: "/dev/xvdc"}:     true,
		{Tag: "kdev0", ContainerPath: "/dev/sub/disk"}: true,
		{Tag: "kdev0", ContainerPath: "/etc/passwd"}:   false,
		{Tag: "kdev0", ContainerPath: "/dev/../etc/x"}: false,
		{Tag: "kdev0", ContainerPath: "dev/xvdc"}:      false,
		{Tag: "a,b", ContainerPath: "/dev/xvdc"}:       false,
	} {
		if err := d.Validate(); (err == nil) != ok {
			t.Errorf("%+v: got %v, want ok=%v", d, err, ok)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"my_container.1-2", true},
		{"", false},
		{"-x", false},
		{"../etc", false},
		{"a/b", false},
		{"a b", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		if err := ValidID("container", tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestAwaitHelloSkipsLeftovers(t *testing.T) {
	stale := "\xff\xffkata-deploy-agent:hel" + "garbage" + string([]byte{0, 1, 0, 0, 0, 0, 0, 1})
	r := strings.NewReader(stale + HelloMagic + "after")
	if err := AwaitHello(r); err != nil {
		t.Fatal(err)
	}
	if err := AwaitHello(strings.NewReader("no hello here")); !errors.Is(err, io.EOF) {
		t.Errorf("no hello: %v", err)
	}
}

// yamuxFrame builds a frame header (and payload for data frames).
func yamuxFrame(typ byte, stream uint32, payload string) string {
	n := uint32(len(payload))
	h := []byte{0, typ, 0, 0, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	if typ != yamuxTypeData {
		return string(h)
	}
	return string(h) + payload
}

func TestHelloWatcher(t *testing.T) {
	// A data payload may contain the hello; only one at a frame boundary
	// counts.
	frames := yamuxFrame(1, 1, "") + yamuxFrame(0, 1, "stdin with "+HelloMagic+" inside") + yamuxFrame(2, 0, "")
	tests := []struct {
		name    string
		input   string
		want    string
		wantEOF bool
	}{
		{"frames only", frames, frames, false},
		{"hello after frames", frames + HelloMagic + "junk", frames, true},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 5, 13, 4096} {
			w := NewHelloWatcher(&chunkReader{data: []byte(tt.input), chunk: chunk})
			got, err := io.ReadAll(w)
			if err != nil || string(got) != tt.want || w.SawHello() != tt.wantEOF {
				t.Errorf("%s, reads of %d: got %q, %v, hello %v", tt.name, chunk, got, err, w.SawHello())
			}
		}
	}
}

type chunkReader struct {
	data  []byte
	chunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// TestHelloSplitAcrossSessions: the hello that ends a session may arrive in
// pieces; the next session's AwaitHello, reading Rest and then the channel,
// must consume all of it. (The host sends nothing more until it reads the
// agent's ready.)
func TestHelloSplitAcrossSessions(t *testing.T) {
	frames := yamuxFrame(1, 1, "") + yamuxFrame(0, 1, "payload")
	for _, chunk := range []int{1, 5, 13, len(frames) + 3, 4096} {
		ch := &chunkReader{data: []byte(frames + HelloMagic), chunk: chunk}
		w := NewHelloWatcher(ch)
		if _, err := io.ReadAll(w); err != nil || !w.SawHello() || len(w.Rest()) == 0 {
			t.Fatalf("reads of %d: %v, hello %v, rest %q", chunk, err, w.SawHello(), w.Rest())
		}
		if err := AwaitHello(io.MultiReader(bytes.NewReader(w.Rest()), ch)); err != nil {
			t.Fatalf("reads of %d: AwaitHello after a split hello: %v", chunk, err)
		}
		ch.data = []byte("next session")
		if rest, _ := io.ReadAll(ch); string(rest) != "next session" {
			t.Errorf("reads of %d: the next session reads %q", chunk, rest)
		}
	}
}

func TestShareModuleGroups(t *testing.T) {
	for _, tc := range []struct {
		share string
		want  []string
	}{
		{Share9P, []string{ModuleGroup9P}},
		{ShareVirtioFS, []string{ModuleGroupVirtioFS}},
		{ShareBlock, []string{ModuleGroupBlock, ModuleGroupFS}},
		{"nfs", nil},
	} {
		got := ShareModuleGroups(tc.share)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ShareModuleGroups(%q) = %q, want %q", tc.share, got, tc.want)
		}
		for _, g := range got {
			if !IsModuleGroup(g) {
				t.Errorf("%q is not a module group", g)
			}
		}
	}
}
