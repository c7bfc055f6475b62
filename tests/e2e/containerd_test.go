package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// ctrdRuntime is the runtime name of the containerd tests: distinct from every other test's.
const ctrdRuntime = "kata-ctrd-test"

// testContainerd is a containerd of the test's own: its configuration, socket and state in a
// temporary directory, the CRI plugin enabled (the test engine's containerd has it disabled).
type testContainerd struct {
	bin, dir, config, sock, log string
	cmd                         *exec.Cmd
}

func newTestContainerd(t *testing.T, version int) *testContainerd {
	t.Helper()
	bin := filepath.Join(os.Getenv("KATA_TEST_ENGINE_BIN"), "containerd")
	if _, err := os.Stat(bin); err != nil {
		missing(t, "no containerd at $KATA_TEST_ENGINE_BIN: run `hack/engine.sh up` and source its env file")
	}
	// A short directory: a unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kd-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &testContainerd{bin: bin, dir: dir, config: filepath.Join(dir, "config.toml"), sock: filepath.Join(dir, "c.sock"), log: filepath.Join(dir, "containerd.log")}
	images := "[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n"
	if version == 2 {
		images = "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n"
	}
	cfg := fmt.Sprintf("# The e2e test's containerd.\nversion = %d\nroot = %q\nstate = %q\n\n[grpc]\n  address = %q\n\n[ttrpc]\n  address = %q\n\n[debug]\n  address = %q\n\n%s",
		version, dir+"/root", dir+"/state", c.sock, c.sock+".ttrpc", dir+"/debug.sock", images)
	if err := os.WriteFile(c.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	t.Cleanup(c.stop)
	return c
}

func (c *testContainerd) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(c.bin, "--config", c.config)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if conn, err := net.Dial("unix", c.sock); err == nil {
			conn.Close()
			return
		}
	}
	data, _ := os.ReadFile(c.log)
	t.Fatalf("containerd did not serve %s:\n%s", c.sock, data)
}

func (c *testContainerd) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
}

func (c *testContainerd) restart(t *testing.T) {
	t.Helper()
	c.stop()
	_ = os.Remove(c.sock)
	c.start(t)
}

// criHandlers asks the running containerd's CRI for its runtime handlers.
func (c *testContainerd) criHandlers(t *testing.T) []string {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		data, _ := os.ReadFile(c.log)
		t.Fatalf("CRI Status: %v\n%s", err, data)
	}
	var names []string
	for _, h := range resp.RuntimeHandlers {
		names = append(names, h.Name)
	}
	return names
}

// dumpRuntime is the runtime as `containerd config dump` shows it.
func (c *testContainerd) dumpRuntime(t *testing.T) (containerdcfg.Runtime, bool) {
	t.Helper()
	out, err := exec.Command(c.bin, "--config", c.config, "config", "dump").Output()
	if err != nil {
		t.Fatalf("config dump: %v", err)
	}
	doc, err := containerdcfg.Decode("dump", out)
	if err != nil {
		t.Fatal(err)
	}
	return containerdcfg.FindRuntime(doc, ctrdRuntime)
}

// install --engine containerd against a real containerd (configuration versions 2 and 3): the
// drop-in is imported, `config dump` and, after a restart, the CRI list the runtime; uninstall
// restores the main configuration byte for byte, and Docker's daemon.json is never touched.
func TestInstallContainerdEngine(t *testing.T) {
	e := requireInstall(t)
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("config-v%d", version), func(t *testing.T) {
			c := newTestContainerd(t, version)
			origConfig := readFile(t, c.config)
			djBefore := e.daemonJSONBytes(t)
			prefix := filepath.Join(c.dir, "prefix")
			args := []string{"--engine", "containerd", "--containerd-address", c.sock, "--prefix", prefix, "--runtime-name", ctrdRuntime,
				"--artifacts-dir", e.artifacts, "--kernel", e.kernel}
			inst := kataDeploy(t, append([]string{"install", "-o", "json"}, args...)...)
			r := decode[install.Result](t, inst, "install")
			dropIn := filepath.Join(c.dir, "conf.d", "kata-deploy-"+ctrdRuntime+".toml")
			if inst.code != 0 || r.ContainerdDropIn != dropIn || r.ContainerdConfig != c.config || r.Containerd == nil || !r.Containerd.Pending {
				t.Fatalf("install: exit %d %+v restart %+v\n%s", inst.code, r, r.Containerd, inst.stderr)
			}
			defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix, "--containerd-address", c.sock)
			if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "restart it") }) {
				t.Errorf("no restart instructions for a containerd outside systemd: %q", r.Warnings)
			}
			if !strings.Contains(string(readFile(t, c.config)), `"`+dropIn+`"`) {
				t.Errorf("the main configuration does not import the drop-in:\n%s", readFile(t, c.config))
			}
			l := layout.Layout{Prefix: prefix, Version: r.Version}
			if got, ok := c.dumpRuntime(t); !ok || got.Path != l.EntryShim() || got.ConfigPath != l.EntryConfig() {
				t.Errorf("config dump: %+v, %v", got, ok)
			}
			st := decode[install.Status](t, kataDeploy(t, "status", "-o", "json", "--prefix", prefix, "--containerd-address", c.sock), "status")
			if st.Healthy || st.Containerd == nil || !st.Containerd.RestartPending {
				t.Errorf("status before the restart: %+v %v", st.Containerd, st.Problems)
			}

			c.restart(t)
			if handlers := c.criHandlers(t); !slices.Contains(handlers, ctrdRuntime) {
				t.Errorf("the CRI lists handlers %v, not %s", handlers, ctrdRuntime)
			}
			stRes := kataDeploy(t, "status", "-o", "json", "--prefix", prefix, "--containerd-address", c.sock)
			st = decode[install.Status](t, stRes, "status")
			if stRes.code != 0 || !st.Healthy || !st.Containerd.SeesRuntime || st.Containerd.RestartPending {
				t.Errorf("status after the restart: exit %d %+v %v", stRes.code, st.Containerd, st.Problems)
			}
			if string(e.daemonJSONBytes(t)) != string(djBefore) {
				t.Error("--engine containerd changed Docker's daemon.json")
			}

			un := kataDeploy(t, "uninstall", "--prefix", prefix, "--containerd-address", c.sock)
			if un.code != 0 {
				t.Fatalf("uninstall: exit %d\n%s", un.code, un.stderr)
			}
			if got := readFile(t, c.config); string(got) != string(origConfig) {
				t.Errorf("main configuration after uninstall:\n%s\nwant:\n%s", got, origConfig)
			}
			for _, p := range []string{dropIn, filepath.Dir(dropIn), prefix} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s is left: %v", p, err)
				}
			}
			c.restart(t)
			if handlers := c.criHandlers(t); slices.Contains(handlers, ctrdRuntime) {
				t.Errorf("the CRI still lists %s after uninstall", ctrdRuntime)
			}
		})
	}
}
