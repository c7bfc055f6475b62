package dockerapi

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestValidateArgs(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"dockerd"}, []string{"--validate", "--config-file", "/tmp/x.json"}},
		{[]string{"/usr/bin/dockerd", "-H", "fd://", "--config-file", "/etc/docker/d.json", "--data-root=/d"},
			[]string{"-H", "fd://", "--data-root=/d", "--validate", "--config-file", "/tmp/x.json"}},
		{[]string{"dockerd", "--config-file=/a.json", "--debug"}, []string{"--debug", "--validate", "--config-file", "/tmp/x.json"}},
		{[]string{"dockerd", "--pidfile", "/p", "--", "--config-file", "x"}, []string{"--pidfile", "/p", "--validate", "--config-file", "/tmp/x.json"}},
	}
	for _, tt := range tests {
		if got := ValidateArgs(tt.args, "/tmp/x.json"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ValidateArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestUnixSocketPath(t *testing.T) {
	tests := []struct {
		host, want string
		ok         bool
	}{
		{"unix:///var/run/docker.sock", "/var/run/docker.sock", true},
		{"unix:///run/x/../docker.sock", "/run/docker.sock", true},
		{"tcp://10.0.0.1:2375", "", false},
		{"ssh://me@host", "", false},
	}
	for _, tt := range tests {
		got, err := unixSocketPath(tt.host)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("unixSocketPath(%q) = %q, %v; want %q ok=%v", tt.host, got, err, tt.want, tt.ok)
		}
	}
}

// Against the test engine (hack/engine.sh up): a reload is confirmed by its event, validation uses
// the daemon's own binary and command line, and the daemon.json found is the engine's.
func TestAgainstTestEngine(t *testing.T) {
	testreq.Engine(t)
	testreq.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if want := os.Getenv("KATA_TEST_DAEMON_JSON"); e.Config.Path != want {
		t.Errorf("config file = %q, want %q", e.Config.Path, want)
	}
	start := time.Now()
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	t.Logf("reload confirmed in %s", time.Since(start))
	names, def, err := e.Runtimes(ctx)
	if err != nil || !slices.Contains(names, "runc") || def == "" {
		t.Errorf("runtimes %v default %q err %v", names, def, err)
	}
	if err := e.Validate(ctx, []byte(`{"runtimes": {"x": {"runtimeType": "/bin/true"}}}`)); err != nil && !errors.Is(err, registration.ErrValidateUnsupported) {
		t.Errorf("a valid file: %v", err)
	}
	err = e.Validate(ctx, []byte(`{"no-such-option": true}`))
	if err == nil || !strings.Contains(err.Error(), "no-such-option") {
		t.Errorf("an unknown key: err = %v, want dockerd's complaint naming it", err)
	}
	// The engine passes --data-root on its command line: the same key in the file is a conflict.
	err = e.Validate(ctx, []byte(`{"data-root": "/elsewhere"}`))
	if err == nil || !strings.Contains(err.Error(), "data-root") {
		t.Errorf("a key also given as a flag: err = %v, want a conflict", err)
	}
	if ok, err := e.HasImage(ctx, "no-such-image-kata-deploy:never"); ok || err != nil {
		t.Errorf("HasImage(absent) = %v, %v", ok, err)
	}
}
