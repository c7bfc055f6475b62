// Package fleet rolls kata-deploy out to the nodes of a Docker Swarm: a global service's task
// (which cannot be privileged nor share the host's pid namespace) runs the privileged installer
// container on its own node through the node's Docker socket, labels the node, waits, and on
// stop runs the uninstaller the same way and takes the label off (configs/swarm).
package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// NodeLabel is the label a node gets once installed; its value is LabelInstalled.
const (
	NodeLabel      = "kata-deploy"
	LabelInstalled = "installed"
)

// SocketPath is where the launcher's container mounts the node's Docker socket.
const SocketPath = "/var/run/docker.sock"

// RunTimeout bounds one installer run (a guest image build under emulation takes minutes).
const RunTimeout = 20 * time.Minute

// Launcher runs the installer image on the node whose Docker daemon cli reaches.
type Launcher struct {
	Cli *client.Client
	// Image is the installer image; empty: the image of the launcher's own container.
	Image string
	// Prefix is the install's --prefix, for install and uninstall alike; empty: the default.
	Prefix string
	// InstallArgs follow "install" (e.g. --set-default-runtime).
	InstallArgs []string
	Log         io.Writer
}

// self is what the launcher learns about its own container: its image, and where the node's
// Docker socket it mounts is on the node (what the installer must be told: it runs in the
// node's root).
type self struct {
	image      string
	nodeSocket string
}

// inspectSelf finds the launcher's container (its hostname is its ID, as Docker sets it).
func (l *Launcher) inspectSelf(ctx context.Context) (self, error) {
	host, err := os.Hostname()
	if err != nil {
		return self{}, err
	}
	c, err := l.Cli.ContainerInspect(ctx, host)
	if err != nil {
		return self{}, fmt.Errorf("inspecting the launcher's own container %s: %w; mount the node's Docker socket at %s", host, err, SocketPath)
	}
	s := self{image: c.Image}
	for _, m := range c.Mounts {
		if m.Destination == SocketPath {
			s.nodeSocket = m.Source
		}
	}
	if s.nodeSocket == "" {
		return s, fmt.Errorf("the launcher's container does not mount the node's Docker socket at %s", SocketPath)
	}
	return s, nil
}

// Install runs `install` in the privileged installer container, then labels the node (on a
// worker, which cannot, with a warning).
func (l *Launcher) Install(ctx context.Context) error {
	s, err := l.inspectSelf(ctx)
	if err != nil {
		return err
	}
	if err := l.run(ctx, s, append(l.command("install"), l.InstallArgs...)); err != nil {
		return err
	}
	return l.warnNotManager(l.label(ctx, LabelInstalled))
}

// Uninstall runs `uninstall` in the privileged installer container, then takes the label off.
// A refused uninstall (containers still use the runtime) leaves the node installed and labelled.
func (l *Launcher) Uninstall(ctx context.Context) error {
	s, err := l.inspectSelf(ctx)
	if err != nil {
		return err
	}
	if err := l.run(ctx, s, l.command("uninstall")); err != nil {
		return err
	}
	return l.warnNotManager(l.label(ctx, ""))
}

func (l *Launcher) command(name string) []string {
	if l.Prefix != "" {
		return []string{name, "--prefix", l.Prefix}
	}
	return []string{name}
}

func (l *Launcher) warnNotManager(err error) error {
	if errors.Is(err, ErrNotManager) {
		fmt.Fprintf(l.Log, "warning: %v\n", err)
		return nil
	}
	return err
}

// run is `docker run --rm --privileged --pid=host -v /:/host -e DOCKER_HOST=... IMAGE args`
// through the node's Engine API, its output copied to Log.
func (l *Launcher) run(ctx context.Context, s self, args []string) error {
	image := l.Image
	if image == "" {
		image = s.image
	}
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	name := fmt.Sprintf("kata-deploy-%s-%s", args[0], suffix())
	created, err := l.Cli.ContainerCreate(ctx,
		&container.Config{Image: image, Cmd: args, Env: []string{"DOCKER_HOST=unix://" + s.nodeSocket},
			Labels: map[string]string{"io.kata-deploy.fleet": args[0]}},
		&container.HostConfig{Privileged: true, PidMode: "host", Binds: []string{"/:/host"}}, nil, nil, name)
	if err != nil {
		return fmt.Errorf("creating the installer container from %s: %w", image, err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rcancel()
		_ = l.Cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true})
	}()
	if err := l.Cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting the installer container: %w", err)
	}
	waitC, errC := l.Cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		return fmt.Errorf("waiting for the installer container: %w", err)
	}
	if err := l.copyLogs(ctx, created.ID); err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("kata-deploy %s exited with status %d on this node (its output is above)", args[0], code)
	}
	return nil
}

func (l *Launcher) copyLogs(ctx context.Context, id string) error {
	rc, err := l.Cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Errorf("reading the installer's output: %w", err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return fmt.Errorf("reading the installer's output: %w", err)
	}
	_, err = l.Log.Write(out.Bytes())
	return err
}

// ErrNotManager is returned by label on a worker node: only managers may change node labels.
var ErrNotManager = errors.New("this node is not a swarm manager")

// label sets the node's NodeLabel to value, or removes it when value is empty.
func (l *Launcher) label(ctx context.Context, value string) error {
	info, err := l.Cli.Info(ctx)
	if err != nil {
		return fmt.Errorf("asking the node's Docker for its swarm node: %w", err)
	}
	id := info.Swarm.NodeID
	if id == "" {
		return fmt.Errorf("this Docker is not part of a swarm: nothing to label")
	}
	if !info.Swarm.ControlAvailable {
		return fmt.Errorf("%w: label it from a manager (docker node update --label-add %s=%s %s)", ErrNotManager, NodeLabel, LabelInstalled, id)
	}
	node, _, err := l.Cli.NodeInspectWithRaw(ctx, id)
	if err != nil {
		return fmt.Errorf("inspecting node %s: %w", id, err)
	}
	spec := node.Spec
	if value == "" {
		if _, ok := spec.Labels[NodeLabel]; !ok {
			return nil
		}
		delete(spec.Labels, NodeLabel)
	} else {
		if spec.Labels[NodeLabel] == value {
			return nil
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[NodeLabel] = value
	}
	if err := l.Cli.NodeUpdate(ctx, id, node.Version, spec); err != nil {
		return fmt.Errorf("labelling node %s: %w", id, err)
	}
	return nil
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
