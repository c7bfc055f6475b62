package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseModuleList(t *testing.T) {
	data := []byte(`# virtio first
virtio_ring
  virtio  

9pnet_virtio
../../etc/passwd
fs/9p
9p # trailing comment
nf-conntrack
` + strings.Repeat("m", 64) + "\n" + strings.Repeat("m", 65) + "\n")
	names, bad := ParseModuleList(data)
	wantNames := []string{"virtio_ring", "virtio", "9pnet_virtio", "nf-conntrack", strings.Repeat("m", 64)}
	wantBad := []string{"../../etc/passwd", "fs/9p", "9p # trailing comment", strings.Repeat("m", 65)}
	if !reflect.DeepEqual(names, wantNames) || !reflect.DeepEqual(bad, wantBad) {
		t.Errorf("got %q / %q, want %q / %q", names, bad, wantNames, wantBad)
	}
}

func TestLoadModulesReportsMissing(t *testing.T) {
	var buf bytes.Buffer
	n := LoadModules(t.TempDir(), []string{"no_such_module"}, NewLogger(&buf, false))
	if n != 0 || !strings.Contains(buf.String(), "<3>kata-agent: module no_such_module: open module") {
		t.Errorf("loaded %d, log %q", n, buf.String())
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		cmdline string
		debug   bool
	}{
		{"console=ttyS0 quiet", false},
		{"quiet agent.debug=1", true},
		{"agent.debug", true},
		{"agent.debug=0", false},
		{"agent.debug=true panic=-1", true},
		{"agent.debugger=1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ParseCmdline(tt.cmdline).Debug; got != tt.debug {
			t.Errorf("ParseCmdline(%q).Debug = %v", tt.cmdline, got)
		}
	}
}

func TestParseCmdlineModules(t *testing.T) {
	tests := []struct {
		cmdline   string
		groups    []string
		badGroups []string
	}{
		{"quiet", nil, nil},
		{"agent.modules=9p,net", []string{"9p", "net"}, nil},
		{"agent.modules=virtiofs", []string{"virtiofs"}, nil},
		{"agent.modules=", nil, nil},
		{"agent.modules=9p,,../../etc/x,net", []string{"9p", "net"}, []string{"../../etc/x"}},
		{"agent.modules=9P", nil, []string{"9P"}},
	}
	for _, tt := range tests {
		o := ParseCmdline(tt.cmdline)
		if !slices.Equal(o.Modules, tt.groups) || !slices.Equal(o.BadModules, tt.badGroups) {
			t.Errorf("ParseCmdline(%q) modules %q bad %q, want %q and %q", tt.cmdline, o.Modules, o.BadModules, tt.groups, tt.badGroups)
		}
	}
}

// A group loads its list once, whoever asks first; Preloaded says when the named groups are in.
func TestModuleGroups(t *testing.T) {
	lists := t.TempDir()
	os.WriteFile(filepath.Join(lists, "9p.load"), []byte("no_such_9p\n../bad\n"), 0o644)
	var mu sync.Mutex
	var buf bytes.Buffer
	g := NewModuleGroups(lists, t.TempDir(), NewLogger(lockedWriter{&mu, &buf}, false))
	if g.Preloaded() {
		t.Error("preloaded before Preload")
	}
	g.Preload([]string{"9p", "net"}) // no net.load: an image without the group loads nothing
	deadline := time.Now().Add(5 * time.Second)
	for !g.Preloaded() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !g.Preloaded() {
		t.Fatal("never preloaded")
	}
	g.Need("9p")
	g.Need("../9p")
	mu.Lock()
	log := buf.String()
	mu.Unlock()
	if n := strings.Count(log, "module no_such_9p"); n != 1 {
		t.Errorf("the 9p group was loaded %d times, want once; log:\n%s", n, log)
	}
	for _, want := range []string{`"../bad" is not a module name`, `"../9p" is not a module group`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	var none *ModuleGroups
	none.Need("9p")
	if !none.Preloaded() {
		t.Error("no module groups: not preloaded")
	}
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	ports := map[string]string{"vport1p1": "org.qemu.guest_agent.0\n", "vport2p1": "agent.0\n", "vport2p2": ""}
	for port, name := range ports {
		os.MkdirAll(filepath.Join(sys, port), 0o755)
		os.WriteFile(filepath.Join(sys, port, "name"), []byte(name), 0o644)
	}
	os.MkdirAll(filepath.Join(sys, "vport3p1"), 0o755) // no name file yet
	got, err := FindPort(sys, "/dev", "agent.0")
	if err != nil || got != "/dev/vport2p1" {
		t.Errorf("FindPort = %q, %v", got, err)
	}
	if _, err := FindPort(sys, "/dev", "agent.1"); err == nil || !strings.Contains(err.Error(), "virtio-serial port not found") {
		t.Errorf("missing port: %v", err)
	}
	if _, err := FindPort(filepath.Join(sys, "absent"), "/dev", "agent.0"); err == nil {
		t.Errorf("missing sysfs dir: no error")
	}
}

func TestExitStatus(t *testing.T) {
	// Wait statuses as the kernel encodes them.
	tests := []struct {
		ws   unix.WaitStatus
		want int
	}{
		{0, 0},
		{42 << 8, 42},
		{255 << 8, 255},
		{unix.WaitStatus(unix.SIGKILL), 137},
		{unix.WaitStatus(unix.SIGTERM), 143},
		{unix.WaitStatus(unix.SIGSEGV) | 0x80, 139}, // core dumped
	}
	for _, tt := range tests {
		if got := ExitStatus(tt.ws); got != tt.want {
			t.Errorf("ExitStatus(%#x) = %d, want %d", uint32(tt.ws), got, tt.want)
		}
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, false)
	l.Debugf("hidden %d", 1)
	l.Infof("info")
	l.Errorf("two\nlines\n")
	want := "<5>kata-agent: info\n<3>kata-agent: two | lines\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
	buf.Reset()
	NewLogger(&buf, true).Debugf("shown")
	if buf.String() != "<5>kata-agent: shown\n" {
		t.Errorf("debug: got %q", buf.String())
	}
	var nilLogger *Logger
	nilLogger.Errorf("no panic")
	nilLogger.Debugf("no panic")
}

func TestHostConnected(t *testing.T) {
	// A pipe's read end reports POLLHUP once the writer is gone, like a
	// virtio-serial port without a host.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ok, err := hostConnected(r); !ok || err != nil {
		t.Errorf("writer open: %v, %v", ok, err)
	}
	w.Close()
	if ok, err := hostConnected(r); ok || err != nil {
		t.Errorf("writer closed: %v, %v", ok, err)
	}
}

func TestParseCmdlineCgroup(t *testing.T) {
	for cmdline, v1 := range map[string]bool{
		"quiet agent.cgroup=v1": true,
		"agent.cgroup=v2":       false,
		"quiet":                 false,
		"agent.cgroup=v1x":      false,
	} {
		if got := ParseCmdline(cmdline).CgroupV1; got != v1 {
			t.Errorf("ParseCmdline(%q).CgroupV1 = %v", cmdline, got)
		}
	}
}

// lockedWriter serialises writes to w: the module groups log from their own goroutine.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
