package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"

	"github.com/kata-deploy/kata-deploy/internal/version"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// RuntimeName is the containerd runtime type this shim serves.
const RuntimeName = "io.containerd.kata.v2"

// bundleRecord is written into the bundle at Create so that `delete` (run by containerd after the
// shim died) finds the sandbox's state directory without the configuration.
const bundleRecord = "kata-deploy.json"

type record struct {
	StateDir string `json:"stateDir"`
}

// Manager implements containerd's shim.Shim: the short-lived `start` and `delete` invocations.
type Manager struct{}

// Name is the runtime name.
func (Manager) Name() string { return RuntimeName }

// Start launches the long-running shim daemon (this binary without an action) for one container,
// listening on a socket containerd gets back in the bootstrap result.
func (Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := params.GetInstanceID()
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = "/run/containerd/s"
	}
	address, err := shim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), id, false)
	if err != nil {
		return nil, err
	}
	listener, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("creating the shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// A shim for this id already serves: containerd is re-attaching.
			return &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}, nil
		}
		if err := shim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("removing a stale shim socket: %w", err)
		}
		if listener, err = shim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("creating the shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			listener.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	file, err := listener.File()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	cmd, err := daemonCommand(ns, id, params.GetContainerdGrpcAddress(), params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{file} // fd 3: pkg/shim serves the listener it finds there
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the shim daemon: %w", err)
	}
	go cmd.Wait()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("adjusting the shim's OOM score: %w", err)
	}
	return &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}, nil
}

func daemonCommand(ns, id, containerdAddress string, debug bool) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd() // the bundle
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", containerdAddress}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	// Its own process group: a signal to containerd's group must not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop is containerd's `delete` action: the shim daemon is gone (crashed or killed), so clean up
// what it left: the VM, the shared mounts, the state directory.
func (Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	data, err := os.ReadFile(filepath.Join(bundle, bundleRecord))
	if err == nil {
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			return shim.StopStatus{}, fmt.Errorf("reading %s: %w", bundleRecord, err)
		}
		if err := sandbox.Cleanup(rec.StateDir); err != nil {
			return shim.StopStatus{}, fmt.Errorf("cleaning up sandbox %s: %w", id, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return shim.StopStatus{}, err
	}
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// Info describes the runtime to containerd.
func (Manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	v := version.Get()
	return withFeatures(&types.RuntimeInfo{Name: RuntimeName, Version: &types.RuntimeVersion{Version: v.Version, Revision: v.Commit}})
}

func writeRecord(bundle string, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, bundleRecord), data, 0o600)
}

var _ shim.Shim = Manager{}

// errNotImplemented is returned by task methods this runtime does not offer.
var errNotImplemented = errdefs.ErrNotImplemented
