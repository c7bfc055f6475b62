package fakedocker

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of a fake dockerd process (see Serve and StartProcess).
const (
	// SocketEnv is the socket a fake dockerd process serves the Engine API on.
	SocketEnv = "KATA_FAKEDOCKERD_SOCKET"
	// MarkerEnv is a file a fake dockerd run with --validate writes "uid <euid>" to, and then
	// succeeds: the proof that someone ran the listening process's binary.
	MarkerEnv = "KATA_FAKEDOCKERD_MARKER"
)

// APIVersion is the Engine API version a fake dockerd process speaks.
const APIVersion = "1.45"

// Serve makes the running program a fake dockerd process when SocketEnv is set, and then never
// returns: it serves what connecting and `kata-deploy check` ask (/_ping, /version, /info),
// or, run with --validate, writes MarkerEnv's file and exits. Without SocketEnv it returns at
// once. A test binary calls it first thing (from init or TestMain), so that StartProcess can run
// a copy of it.
func Serve() {
	sock := os.Getenv(SocketEnv)
	if sock == "" {
		return
	}
	if slices.Contains(os.Args, "--validate") {
		if m := os.Getenv(MarkerEnv); m != "" {
			_ = os.WriteFile(m, fmt.Appendf(nil, "uid %d\n", os.Geteuid()), 0o644)
		}
		os.Exit(0)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake dockerd:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "fake dockerd:", http.Serve(l, apiHandler()))
	os.Exit(1)
}

func apiHandler() http.Handler {
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if i := strings.Index(path[1:], "/"); strings.HasPrefix(path, "/v") && i > 0 {
			path = path[i+1:] // without the /v1.45 prefix
		}
		switch path {
		case "/_ping":
			w.Header().Set("Api-Version", APIVersion)
			_, _ = io.WriteString(w, "OK")
		case "/version":
			reply(w, map[string]string{"Version": "29.0.0", "ApiVersion": APIVersion, "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"})
		case "/info":
			reply(w, map[string]any{"Runtimes": map[string]any{"runc": map[string]string{"path": "runc"}}, "DefaultRuntime": "runc",
				"CgroupDriver": "cgroupfs", "CgroupVersion": "1"})
		default:
			http.NotFound(w, r)
		}
	})
}

// Process is a fake dockerd process started by StartProcess.
type Process struct {
	// Host is its Engine API address (unix://...).
	Host string
	// Marker is the file it writes when its binary is run with --validate (absent until then).
	Marker string
	// ConfigFile is the --config-file on its command line (not created).
	ConfigFile string
	// Dir holds its binary, socket and files.
	Dir string
	PID int
}

// StartProcess runs a copy of the test binary, named dockerd so that its process name is, as
// uid:gid, serving the Engine API (Serve) on a socket in a directory it owns, with --config-file
// on its command line. The process is killed at the end of the test. The test binary must call
// Serve first thing.
func StartProcess(t testing.TB, uid, gid int) *Process {
	t.Helper()
	dir, err := os.MkdirTemp("", "fakedockerd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	run := filepath.Join(dir, "run")
	p := &Process{Host: "unix://" + filepath.Join(run, "docker.sock"), Marker: filepath.Join(dir, "validated"),
		ConfigFile: filepath.Join(dir, "daemon.json"), Dir: dir}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dockerd")
	for _, err := range []error{os.Chmod(dir, 0o755), copyExecutable(self, bin), os.Mkdir(run, 0o755), os.Chown(run, uid, gid)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--config-file", p.ConfigFile)
	cmd.Env = []string{SocketEnv + "=" + filepath.Join(run, "docker.sock"), MarkerEnv + "=" + p.Marker, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.PID = cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sock := filepath.Join(run, "docker.sock")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake dockerd did not listen on %s", sock)
		}
	}
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
