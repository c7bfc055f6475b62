package commands

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/install"
)

// The older flag names keep working, through the flag they stand for.
func TestFlagAliases(t *testing.T) {
	tests := []struct {
		cmd        func() *cobra.Command
		args       []string
		flag, want string
	}{
		{newInstallCommand, []string{"--default"}, "set-default-runtime", "true"},
		{newInstallCommand, []string{"--config-file", "/etc/d.json"}, "daemon-json", "/etc/d.json"},
		{newUpgradeCommand, []string{"--config-file", "/etc/d.json"}, "daemon-json", "/etc/d.json"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := tt.cmd()
			if err := c.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			if got := c.Flags().Lookup(tt.flag).Value.String(); got != tt.want {
				t.Errorf("--%s = %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
}

func TestUninstallForce(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want install.UninstallOptions
	}{
		{nil, install.UninstallOptions{}},
		{[]string{"--ignore-in-use"}, install.UninstallOptions{IgnoreInUse: true}},
		{[]string{"--force"}, install.UninstallOptions{IgnoreInUse: true, RemovePluginWithVolumes: true}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := newUninstallCommand()
			if err := c.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			var o install.UninstallOptions
			o.IgnoreInUse = c.Flags().Lookup("ignore-in-use").Value.String() == "true"
			applyForce(&o, c.Flags().Lookup("force").Value.String() == "true")
			if o.IgnoreInUse != tc.want.IgnoreInUse || o.RemovePluginWithVolumes != tc.want.RemovePluginWithVolumes {
				t.Errorf("got %+v, want %+v", o, tc.want)
			}
		})
	}
}

func TestReplaceFlags(t *testing.T) {
	tests := []struct {
		args []string
		want install.Replace
	}{
		{nil, install.Replace{}},
		{[]string{"--replace-foreign"}, install.Replace{Foreign: true}},
		{[]string{"--replace-modified", "--replace-runtime-entry"}, install.Replace{Modified: true, RuntimeEntry: true}},
		{[]string{"--force"}, install.ReplaceAll},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var r replaceFlags
			c := &cobra.Command{}
			bindReplace(c.Flags(), &r)
			if err := c.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			if got := r.value(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The help shows the new names only; the aliases are hidden.
func TestHelpShowsNewFlagNames(t *testing.T) {
	for _, tt := range []struct {
		cmd        string
		want, hide []string
	}{
		{"install", []string{"--set-default-runtime", "--daemon-json", "--replace-foreign", "--force"}, []string{"--default ", "--config-file"}},
		{"upgrade", []string{"--daemon-json", "--replace-modified"}, []string{"--config-file"}},
		{"uninstall", []string{"--ignore-in-use", "--force"}, nil},
	} {
		var out, errb bytes.Buffer
		if code := Execute(context.Background(), []string{tt.cmd, "--help"}, &out, &errb); code != ExitOK {
			t.Fatalf("%s --help: exit %d %s", tt.cmd, code, errb.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s --help lacks %s", tt.cmd, w)
			}
		}
		for _, h := range tt.hide {
			if strings.Contains(out.String(), h) {
				t.Errorf("%s --help shows %s", tt.cmd, h)
			}
		}
	}
}

func TestDescribePlugin(t *testing.T) {
	two := 2
	for _, tc := range []struct {
		name string
		p    install.PluginStatus
		want string
	}{
		{"process serving", install.PluginStatus{Name: "kata-block", Mode: "process", Socket: "/s.sock", PID: 7, Running: true, SocketReachable: true, Volumes: &two},
			"volume driver kata-block (process): running (pid 7); socket /s.sock reachable: yes; 2 volume(s)"},
		{"unit stopped, docker unreachable", install.PluginStatus{Name: "kata-block", Mode: "systemd", Unit: "/etc/systemd/system/kata-plugins.service", Socket: "/s.sock"},
			"volume driver kata-block (systemd unit /etc/systemd/system/kata-plugins.service): not running; socket /s.sock reachable: no; volumes: Docker not reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describePlugin(&tc.p); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCheckPluginNames(t *testing.T) {
	for _, tc := range []struct {
		o  check.Options
		ok bool
	}{
		{check.Options{}, true},
		{check.Options{VolumeDriver: "kata-block-e2e", NetworkDriver: "kata-net-e2e", PluginSocketDir: "/run/docker/plugins"}, true},
		{check.Options{VolumeDriver: "../etc"}, false},
		{check.Options{NetworkDriver: "a/b"}, false},
		{check.Options{PluginSocketDir: "run/docker"}, false},
		{check.Options{PluginSocketDir: "/run/../etc"}, false},
	} {
		if err := checkPluginNames(tc.o); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.o, err, tc.ok)
		}
	}
}
