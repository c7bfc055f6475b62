package hypervisor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// templateArgs is the command line of c as a template (shared) or a clone.
func templateArgs(t *testing.T, c Config, memFile string, clone bool) []string {
	t.Helper()
	c.memory = &memoryFile{path: memFile, shared: !clone}
	if clone {
		c.incoming = os.Stdin // any file: only its presence shapes the command line
	}
	q, err := qemuConfig(context.Background(), &c, newLayout(c.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	args, err := commandLine(q)
	if err != nil {
		t.Fatal(err)
	}
	return args
}

func TestTemplateCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		accel   string
		maxMem  int
		clone   bool
		tb      int // Config.TCGTranslationMiB
		want    [][]string
		notWant []string
	}{
		{"tcg template", AccelTCG, 0, false, 24, [][]string{
			{"-m", "256M", "-object", "memory-backend-file,id=mem0,size=256M,mem-path=MEM,share=on", "-numa", "node,memdev=mem0"},
			{"-machine", "q35"}, {"-accel", "tcg,tb-size=24"},
		}, []string{"-incoming", "-S", "-cpu", "q35,accel=tcg"}},
		{"tcg clone, QEMU's default buffer", AccelTCG, 0, true, 0, [][]string{
			{"-machine", "q35,accel=tcg"},
		}, []string{"-accel"}},
		{"tcg clone", AccelTCG, 0, true, 24, [][]string{
			{"-m", "256M", "-object", "memory-backend-file,id=mem0,size=256M,mem-path=MEM,share=off", "-numa", "node,memdev=mem0"},
			{"-incoming", "defer"}, {"-S"}, {"-machine", "q35"}, {"-accel", "tcg,tb-size=24"},
		}, []string{"-cpu", "q35,accel=tcg"}},
		{"kvm template", AccelKVM, 0, false, 24, [][]string{
			{"-object", "memory-backend-file,id=mem0,size=256M,mem-path=MEM,share=on"},
			{"-machine", "q35,accel=kvm"}, {"-cpu", "host"},
		}, []string{"-incoming", "-S", "-accel"}},
		{"kvm clone", AccelKVM, 0, true, 24, [][]string{
			{"-object", "memory-backend-file,id=mem0,size=256M,mem-path=MEM,share=off"},
			{"-machine", "q35,accel=kvm"}, {"-cpu", "host"}, {"-incoming", "defer"}, {"-S"},
		}, []string{"-accel"}},
		{"clone with room for hot-plugged RAM", AccelTCG, 4096, true, 0, [][]string{
			{"-m", "256M,slots=8,maxmem=4096M", "-object", "memory-backend-file,id=mem0,size=256M,mem-path=MEM,share=off"},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			c.Accelerator, c.MaxMemoryMiB, c.TCGTranslationMiB = tt.accel, tt.maxMem, tt.tb
			mem := filepath.Join(t.TempDir(), "memory")
			args := templateArgs(t, c, mem, tt.clone)
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			for _, w := range tt.want {
				run := "\x00" + strings.ReplaceAll(strings.Join(w, "\x00"), "MEM", mem) + "\x00"
				if !strings.Contains(joined, run) {
					t.Errorf("command line lacks %q:\n%q", w, args)
				}
			}
			for _, nw := range tt.notWant {
				if slices.Contains(args, nw) {
					t.Errorf("command line has %q:\n%q", nw, args)
				}
			}
			if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "memory-backend-ram") }) {
				t.Errorf("a second RAM backend:\n%q", args)
			}
		})
	}
}

// TestCloneMatchesTemplate checks that a clone's command line is its template's but for what
// may differ: the RAM's sharing, -S and -incoming, and the paths of the VM's own files and
// share. Any other difference would make the restore fail ("Unknown savevm section").
func TestCloneMatchesTemplate(t *testing.T) {
	for _, accel := range []string{AccelTCG, AccelKVM} {
		t.Run(accel, func(t *testing.T) {
			tc := testConfig(t)
			tc.Accelerator = accel
			cc := tc
			cc.ID = "clone-of-template"
			cc.StateDir = filepath.Join(t.TempDir(), "vm")
			cc.Shares = []Share{{Tag: tc.Shares[0].Tag, HostPath: t.TempDir(), Type: Share9P}}
			cc.Placed = func(int) error { return nil }
			mem := filepath.Join(t.TempDir(), "memory")
			normalize := func(args []string, c Config) []string {
				r := strings.NewReplacer(c.StateDir+"/", "STATE/", c.Shares[0].HostPath, "SHARE", "kata-"+c.ID, "NAME", "share=off", "share=SHARE", "share=on", "share=SHARE")
				var out []string
				for i := 0; i < len(args); i++ {
					switch args[i] {
					case "-S":
						continue
					case "-incoming":
						i++
						continue
					}
					out = append(out, r.Replace(args[i]))
				}
				return out
			}
			tArgs := normalize(templateArgs(t, tc, mem, false), tc)
			cArgs := normalize(templateArgs(t, cc, mem, true), cc)
			if !slices.Equal(tArgs, cArgs) {
				t.Errorf("the clone's command line differs from the template's:\ntemplate %q\nclone    %q", tArgs, cArgs)
			}
		})
	}
}

func TestTemplateRefusesWhatItCannotHold(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"virtio-fs", func(c *Config) { c.Shares[0].Type = ShareVirtiofs }},
		{"a disk", func(c *Config) { c.Blocks = []Block{{Path: "/dev/null", ID: "vol0"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.mutate(&c)
			mem := filepath.Join(t.TempDir(), "memory")
			if _, err := StartTemplate(context.Background(), c, mem); err == nil {
				t.Fatal("StartTemplate accepted it")
			}
			if _, err := os.Stat(mem); !os.IsNotExist(err) {
				t.Errorf("the memory file was left: %v", err)
			}
			if _, err := Restore(context.Background(), c, mem, mem); err == nil {
				t.Fatal("Restore accepted it")
			}
		})
	}
}

func TestRestoreChecksTheMemoryFile(t *testing.T) {
	c := testConfig(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.WriteFile(state, []byte("x"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("x"), 0o600)
	for name, mem := range map[string]string{"missing": filepath.Join(dir, "none"), "wrong size": short, "a directory": dir} {
		if _, err := Restore(context.Background(), c, mem, state); err == nil || !strings.Contains(err.Error(), "memory file") {
			t.Errorf("%s: Restore answered %v", name, err)
		}
	}
	if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
		t.Errorf("a failed Restore left the state directory: %v", err)
	}
}
