package dockerapi_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/fakedocker"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestMain(m *testing.M) {
	fakedocker.Serve() // the fake dockerd processes of TestConnectRefusesAnotherUsersDockerd
	os.Exit(m.Run())
}

// A process called dockerd, run by nobody, serving the Engine API: as root, Connect refuses it
// (it would be signalled, its daemon.json written and its binary run as root), and never runs its
// binary.
func TestConnectRefusesAnotherUsersDockerd(t *testing.T) {
	testreq.Root(t)
	const nobody = 65534
	fake := fakedocker.StartProcess(t, nobody, nobody)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := dockerapi.Connect(ctx, fake.Host)
	if err == nil {
		defer e.Close()
		_ = e.Validate(ctx, []byte(`{}`)) // what an install would do next
		data, _ := os.ReadFile(fake.Marker)
		t.Fatalf("Connect accepted a dockerd run by uid %d (pid %d); validating with it ran its binary: %q", nobody, fake.PID, data)
	}
	if !strings.Contains(err.Error(), "runs as uid 65534, not root") || !strings.Contains(err.Error(), "DOCKER_HOST") {
		t.Errorf("the error does not say why, nor what to do: %v", err)
	}
	if data, err := os.ReadFile(fake.Marker); err == nil {
		t.Errorf("the fake dockerd's binary was run: %s", data)
	}
}
