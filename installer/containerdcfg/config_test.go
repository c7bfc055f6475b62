package containerdcfg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	mainPath = "/etc/containerd/config.toml"
	dropIn   = "/etc/containerd/conf.d/kata-deploy-kata.toml"
)

func TestAddImport(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means: no edit
		wantErr        string
	}{
		{name: "after version", in: "version = 3\n\n[grpc]\n  address = '/run/c.sock'\n",
			want: "version = 3\nimports = [\"" + dropIn + "\"]\n\n[grpc]\n  address = '/run/c.sock'\n"},
		{name: "version with a comment", in: "version = 2 # two\nroot = \"/r\"\n",
			want: "version = 2 # two\nimports = [\"" + dropIn + "\"]\nroot = \"/r\"\n"},
		{name: "version at the end without newline", in: "root = \"/r\"\nversion = 2",
			want: "root = \"/r\"\nversion = 2\nimports = [\"" + dropIn + "\"]"},
		{name: "no version", in: "[grpc]\naddress = \"/s\"\n",
			want: "imports = [\"" + dropIn + "\"]\n[grpc]\naddress = \"/s\"\n"},
		{name: "empty file", in: "", want: "imports = [\"" + dropIn + "\"]\n"},
		{name: "empty array", in: "version = 2\nimports = []\n", want: "version = 2\nimports = [\"" + dropIn + "\"]\n"},
		{name: "empty array with a comment", in: "version = 2\nimports = [ # none yet\n]\n",
			want: "version = 2\nimports = [ # none yet\n\"" + dropIn + "\"]\n"},
		{name: "one entry", in: "imports = ['/etc/a.toml']\nversion = 3\n",
			want: "imports = ['/etc/a.toml', \"" + dropIn + "\"]\nversion = 3\n"},
		{name: "quoted key", in: "\"imports\" = [\"/etc/a.toml\"]\n", want: "\"imports\" = [\"/etc/a.toml\", \"" + dropIn + "\"]\n"},
		{name: "CRLF", in: "version = 3\r\n[grpc]\r\n", want: "version = 3\r\nimports = [\"" + dropIn + "\"]\n[grpc]\r\n"},
		{name: "an imports key in a table is not the top level", in: "version = 3\n[x]\nimports = ['/a']\n",
			want: "version = 3\nimports = [\"" + dropIn + "\"]\n[x]\nimports = ['/a']\n"},
		{name: "same path", in: "imports = [\"" + dropIn + "\"]\n"},
		{name: "glob", in: "version = 4\nimports = ['/etc/containerd/conf.d/*.toml']\n"},
		{name: "relative glob", in: "imports = ['conf.d/*.toml']\n"},
		{name: "unclean path", in: "imports = ['/etc/containerd/./conf.d/../conf.d/kata-deploy-kata.toml']\n"},
		{name: "invalid", in: "version = 3\nimports = [\n", wantErr: "line 2"},
		{name: "imports not an array", in: "imports = '/a'\n", wantErr: "not an array"},
		{name: "imports of numbers", in: "imports = [1]\n", wantErr: "not a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, edit, err := AddImport(mainPath, []byte(tt.in), dropIn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if edit != nil || string(out) != tt.in {
					t.Fatalf("edited although an entry covers the drop-in: %q", out)
				}
				return
			}
			if string(out) != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", out, tt.want)
			}
			if edit.BeforeSHA256 != Sum([]byte(tt.in)) || edit.AfterSHA256 != Sum(out) {
				t.Errorf("edit checksums %+v", edit)
			}
			back, ok := RemoveImport(mainPath, out, *edit)
			if !ok || string(back) != tt.in {
				t.Errorf("RemoveImport = %q, %v; want the original %q", back, ok, tt.in)
			}
			// Edited by someone since: the text is still found and cut; their edit stays.
			later := append([]byte("# mine\n"), out...)
			back, ok = RemoveImport(mainPath, later, *edit)
			if !ok || string(back) != "# mine\n"+tt.in {
				t.Errorf("after a later edit: %q, %v", back, ok)
			}
		})
	}
}

// The real-world configurations keep every byte but the inserted path, and come back exactly.
func TestAddImportFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) < 4 {
		t.Fatalf("fixtures: %v", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Decode(file, in)
			if err != nil {
				t.Fatal(err)
			}
			v, err := Version(file, doc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := PluginID(v); err != nil {
				t.Fatalf("version %d: %v", v, err)
			}
			out, edit, err := AddImport(mainPath, in, dropIn)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(file, "v4-default") {
				if edit != nil {
					t.Error("the default conf.d glob covers the drop-in, but the file was edited")
				}
				return
			}
			if edit == nil || len(out) != len(in)+len(edit.Text) || !strings.Contains(edit.Text, dropIn) {
				t.Fatalf("edit %+v", edit)
			}
			back, ok := RemoveImport(mainPath, out, *edit)
			if !ok || string(back) != string(in) {
				t.Errorf("round trip differs:\n%s", back)
			}
		})
	}
}

func TestRemoveImportGone(t *testing.T) {
	in := "version = 3\n"
	out, edit, err := AddImport(mainPath, []byte(in), dropIn)
	if err != nil {
		t.Fatal(err)
	}
	handEdited := strings.Replace(string(out), dropIn, "/etc/other.toml", 1)
	if back, ok := RemoveImport(mainPath, []byte(handEdited), *edit); ok || string(back) != handEdited {
		t.Errorf("an entry changed by hand was removed: %q", back)
	}
}

func TestDropIn(t *testing.T) {
	r := Runtime{Name: "kata", Path: "/opt/kata-deploy/current/bin/containerd-shim-kata-v2", ConfigPath: "/opt/kata-deploy/current/share/defaults/configuration-qemu.toml"}
	for _, tt := range []struct {
		version int
		plugin  string
	}{{2, PluginV2}, {3, PluginV3}, {4, PluginV3}} {
		data, err := DropIn(tt.version, r, []string{"Written by kata-deploy."})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "# Written by kata-deploy.\n") || !strings.Contains(string(data), tt.plugin) {
			t.Errorf("v%d:\n%s", tt.version, data)
		}
		doc, err := Decode("drop-in", data)
		if err != nil {
			t.Fatalf("v%d: %v\n%s", tt.version, err, data)
		}
		if v, _ := Version("drop-in", doc); v != tt.version {
			t.Errorf("version %d, want %d", v, tt.version)
		}
		got, ok := FindRuntime(doc, "kata")
		if !ok || got != r {
			t.Errorf("v%d: FindRuntime = %+v, %v\n%s", tt.version, got, ok, data)
		}
		if _, ok := FindRuntime(doc, "other"); ok {
			t.Error("found a runtime that is not there")
		}
	}
	if _, err := DropIn(1, r, nil); err == nil || !strings.Contains(err.Error(), "config migrate") {
		t.Errorf("version 1: %v", err)
	}
	if _, err := DropIn(3, Runtime{Name: "kata", Path: "relative", ConfigPath: "/c"}, nil); err == nil {
		t.Error("a relative path was accepted")
	}
}

func TestVersionAndImports(t *testing.T) {
	tests := []struct {
		in      string
		version int
		imports []string
		wantErr string
	}{
		{"", 1, nil, ""},
		{"version = 2\nimports = ['a', \"b\"]\n", 2, []string{"a", "b"}, ""},
		{"version = 'three'\n", 0, nil, "not an integer"},
	}
	for _, tt := range tests {
		doc, err := Decode("c", []byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		v, err := Version("c", doc)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v", tt.in, err)
			}
			continue
		}
		imp, _ := Imports("c", doc)
		if v != tt.version || strings.Join(imp, ",") != strings.Join(tt.imports, ",") {
			t.Errorf("%q: version %d imports %v", tt.in, v, imp)
		}
	}
	if VersionForDaemon(2) != 3 || VersionForDaemon(1) != 2 {
		t.Error("VersionForDaemon")
	}
}
