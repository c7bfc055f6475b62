package commands

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

// The templating lines of `status`: on or off, each template's key, the memory its file takes on
// disk, its age, and why its last build failed.
func TestStatusTemplating(t *testing.T) {
	created := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		factory *install.FactoryStatus
		want    []string
		notWant []string
	}{
		{"upstream release: no line", nil, nil, []string{"Templating"}},
		{"off, none", &install.FactoryStatus{TemplatesDir: "/run/kata-deploy.cache/template"},
			[]string{"Templating     off (kata-deploy install --template turns it on); 0 template(s) in /run/kata-deploy.cache/template"}, []string{"Template "}},
		{"on, a ready template", &install.FactoryStatus{Template: true, TemplatesDir: "/run/kata-deploy.cache/template",
			Templates: []install.TemplateStatus{{Key: "8d6b05ebecefb39e", Ready: true, MemoryMiB: 2048, VCPUs: 1, Created: &created,
				AgeSeconds: 330, LastUsed: &created, MemoryBytes: 150 << 20}}},
			[]string{"Templating     on ([factory] template = true); 1 template(s)", "Template       8d6b05ebecefb39e: ready, 2048 MiB and 1 vCPUs, 150.0 MiB of memory file on disk, built 5m30s ago, last clone "},
			[]string{"failed"}},
		{"a failed build", &install.FactoryStatus{Template: true, Templates: []install.TemplateStatus{{Key: "0123456789abcdef", Failed: "building the VM template: boom"}}},
			[]string{"0123456789abcdef: not ready, 0.0 MiB of memory file on disk, last build failed: building the VM template: boom"}, []string{"built "}},
		{"unreadable", &install.FactoryStatus{Template: true, TemplatesDir: "/x", Error: "reading the VM templates: permission denied"},
			[]string{"0 template(s) in /x; reading the VM templates: permission denied"}, nil},
		{"templating on, no pool", &install.FactoryStatus{Template: true, TemplatesDir: "/x", PoolDir: "/p"},
			[]string{"Pool           off (kata-deploy install --template --pool N keeps N clones waiting)\n"}, []string{"Pool fill"}},
		{"a pool, empty", &install.FactoryStatus{Template: true, Pool: 2, PoolDir: "/run/kata-deploy.cache/pool", PoolFill: []install.PoolFill{}},
			[]string{"Pool           on: 2 clone(s) kept waiting ([factory] pool = 2); 0 waiting in /run/kata-deploy.cache/pool\n"}, []string{"Pool fill"}},
		{"a pool being filled", &install.FactoryStatus{Template: true, Pool: 2, PoolDir: "/run/kata-deploy.cache/pool", PoolFillers: []int{42},
			PoolFill: []install.PoolFill{{Key: "8d6b05ebecefb39e", Waiting: 1, Starting: 1, Taken: 3}, {Key: "0123456789abcdef", Waiting: 1}}},
			[]string{"Pool           on: 2 clone(s) kept waiting ([factory] pool = 2); 2 waiting in /run/kata-deploy.cache/pool; being filled (pid 42)",
				"Pool fill      8d6b05ebecefb39e: 1 waiting, 1 starting, 3 taken", "Pool fill      0123456789abcdef: 1 waiting, 0 starting, 0 taken"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printStatus(&out, &install.Status{Installed: true, Prefix: "/opt/kata-deploy", Factory: tt.factory})
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("status has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
