package hostinfo

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestFindExistingInstalls(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
		want  []Install // Path relative to root
	}{
		{"nothing", func(t *testing.T, root string) {}, nil},
		{"upstream kata with VERSION", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata/bin/kata-runtime"), "")
			writeFile(t, filepath.Join(root, "opt/kata/VERSION"), "3.2.0\n")
		}, []Install{{Kind: "upstream-kata", Path: "opt/kata", Version: "3.2.0"}}},
		{"upstream kata, shim only, no VERSION", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata/bin/containerd-shim-kata-v2"), "")
		}, []Install{{Kind: "upstream-kata", Path: "opt/kata"}}},
		{"/opt/kata without binaries is not an install", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata/VERSION"), "3.2.0\n")
			writeFile(t, filepath.Join(root, "opt/kata/bin/kata-runtime/x"), "") // a directory, not a binary
		}, nil},
		{"VERSION link out of root is not followed", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata/bin/kata-runtime"), "")
			symlink(t, "/etc/hostname", filepath.Join(root, "opt/kata/VERSION"))
		}, []Install{{Kind: "upstream-kata", Path: "opt/kata"}}},
		{"kata-deploy with manifest version", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata-deploy/manifest.json"), `{"version": " 0.3.1 ", "files": []}`)
		}, []Install{{Kind: "kata-deploy", Path: "opt/kata-deploy", Version: "0.3.1"}}},
		{"kata-deploy with a damaged manifest", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata-deploy/manifest.json"), `{"version": `)
		}, []Install{{Kind: "kata-deploy", Path: "opt/kata-deploy"}}},
		{"kata-deploy with a non-string version", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata-deploy/manifest.json"), `{"version": 3}`)
		}, []Install{{Kind: "kata-deploy", Path: "opt/kata-deploy"}}},
		{"/opt/kata-deploy without manifest", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata-deploy/bin/containerd-shim-kata-v2"), "")
		}, nil},
		{"both", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/kata/bin/kata-runtime"), "")
			writeFile(t, filepath.Join(root, "opt/kata/VERSION"), "3.29.0")
			writeFile(t, filepath.Join(root, "opt/kata-deploy/manifest.json"), `{"version":"1.0.0"}`)
		}, []Install{
			{Kind: "upstream-kata", Path: "opt/kata", Version: "3.29.0"},
			{Kind: "kata-deploy", Path: "opt/kata-deploy", Version: "1.0.0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, root)
			var want []Install
			for _, in := range tt.want {
				in.Path = filepath.Join(root, in.Path)
				want = append(want, in)
			}
			if got := FindExistingInstalls(root); !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}
