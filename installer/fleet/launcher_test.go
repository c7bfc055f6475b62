package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// fakeNode is the Engine API of a swarm node, as much of it as the launcher uses.
type fakeNode struct {
	mu       sync.Mutex
	exitCode int
	manager  bool
	labels   map[string]string
	version  uint64
	created  []createRequest
	removed  []string
	updates  int
}

type createRequest struct {
	container.Config
	HostConfig container.HostConfig
}

var apiPath = regexp.MustCompile(`^(/v[0-9.]+)?(/.*)$`)

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Api-Version", "1.47")
	p := apiPath.FindStringSubmatch(r.URL.Path)[2]
	host, _ := os.Hostname()
	switch {
	case p == "/_ping":
		_, _ = w.Write([]byte("OK"))
	case p == "/containers/"+host+"/json":
		writeJSON(w, map[string]any{"Id": host, "Image": "sha256:launcher",
			"Mounts": []map[string]string{{"Type": "bind", "Source": "/run/node/docker.sock", "Destination": SocketPath}}})
	case p == "/containers/create":
		var req createRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.created = append(f.created, req)
		writeJSON(w, map[string]any{"Id": "installer"})
	case p == "/containers/installer/start":
		w.WriteHeader(http.StatusNoContent)
	case p == "/containers/installer/wait":
		writeJSON(w, map[string]any{"StatusCode": f.exitCode})
	case p == "/containers/installer/logs":
		var b bytes.Buffer
		msg := []byte("installed\n")
		b.Write([]byte{2, 0, 0, 0})
		_ = binary.Write(&b, binary.BigEndian, uint32(len(msg)))
		b.Write(msg)
		_, _ = w.Write(b.Bytes())
	case r.Method == http.MethodDelete && p == "/containers/installer":
		f.removed = append(f.removed, "installer")
		w.WriteHeader(http.StatusNoContent)
	case p == "/info":
		writeJSON(w, map[string]any{"Swarm": map[string]any{"NodeID": "node1", "ControlAvailable": f.manager}})
	case p == "/nodes/node1":
		writeJSON(w, swarm.Node{ID: "node1", Meta: swarm.Meta{Version: swarm.Version{Index: f.version}},
			Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: f.labels}}})
	case p == "/nodes/node1/update":
		if r.URL.Query().Get("version") != "7" {
			http.Error(w, "update out of sequence", http.StatusConflict)
			return
		}
		var spec swarm.NodeSpec
		_ = json.NewDecoder(r.Body).Decode(&spec)
		f.labels, f.updates = spec.Labels, f.updates+1
	default:
		http.Error(w, "unexpected "+r.Method+" "+p, http.StatusNotFound)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func launcher(t *testing.T, f *fakeNode) (*Launcher, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	var log bytes.Buffer
	return &Launcher{Cli: cli, Prefix: "/opt/kd", InstallArgs: []string{"--set-default-runtime"}, Log: &log}, &log
}

func TestLauncher(t *testing.T) {
	for _, tc := range []struct {
		name       string
		exitCode   int
		manager    bool
		wantErr    string
		wantLabel  string
		wantUpdate int
		wantLog    string
	}{
		{name: "manager", manager: true, wantLabel: LabelInstalled, wantUpdate: 1},
		{name: "worker warns", manager: false, wantUpdate: 0, wantLog: "not a swarm manager"},
		{name: "install fails", exitCode: 1, manager: true, wantErr: "exited with status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeNode{exitCode: tc.exitCode, manager: tc.manager, version: 7, labels: map[string]string{"other": "x"}}
			l, log := launcher(t, f)
			err := l.Install(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Install: %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Install: %v", err)
			}
			if len(f.created) != 1 || len(f.removed) != 1 {
				t.Fatalf("created %d, removed %d installer containers; want one each", len(f.created), len(f.removed))
			}
			c := f.created[0]
			if !c.HostConfig.Privileged || c.HostConfig.PidMode != "host" || !slices.Equal(c.HostConfig.Binds, []string{"/:/host"}) {
				t.Errorf("host config %+v: want privileged, pid host, / at /host", c.HostConfig)
			}
			if want := []string{"install", "--prefix", "/opt/kd", "--set-default-runtime"}; !slices.Equal(c.Cmd, want) {
				t.Errorf("cmd %q, want %q", c.Cmd, want)
			}
			if c.Image != "sha256:launcher" || !slices.Contains(c.Env, "DOCKER_HOST=unix:///run/node/docker.sock") {
				t.Errorf("image %s env %q: want the launcher's own image and the node's socket path", c.Image, c.Env)
			}
			if f.updates != tc.wantUpdate || f.labels[NodeLabel] != tc.wantLabel || f.labels["other"] != "x" {
				t.Errorf("%d updates, labels %v; want %d, %s=%q and the other label kept", f.updates, f.labels, tc.wantUpdate, NodeLabel, tc.wantLabel)
			}
			if !strings.Contains(log.String(), "installed") || !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("log %q: want the installer's output and %q", log.String(), tc.wantLog)
			}
		})
	}
}

func TestLauncherUninstall(t *testing.T) {
	f := &fakeNode{manager: true, version: 7, labels: map[string]string{NodeLabel: LabelInstalled}}
	l, _ := launcher(t, f)
	if err := l.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"uninstall", "--prefix", "/opt/kd"}; len(f.created) != 1 || !slices.Equal(f.created[0].Cmd, want) {
		t.Errorf("created %+v, want one container running %q", f.created, want)
	}
	if _, ok := f.labels[NodeLabel]; ok || f.updates != 1 {
		t.Errorf("labels %v after %d updates: want %s removed", f.labels, f.updates, NodeLabel)
	}
	// A refused uninstall keeps the label: the node is still installed.
	f = &fakeNode{exitCode: 1, manager: true, version: 7, labels: map[string]string{NodeLabel: LabelInstalled}}
	l, _ = launcher(t, f)
	if err := l.Uninstall(context.Background()); err == nil || f.labels[NodeLabel] != LabelInstalled {
		t.Errorf("failed uninstall: %v, labels %v; want an error and the label kept", err, f.labels)
	}
}
