package manifest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

var update = flag.Bool("update", false, "rewrite testdata/manifest-v<N>.json from fullManifest")

// goldenPrefix is the prefix recorded in the golden manifests.
const goldenPrefix = "/opt/kata-deploy"

// fullManifest sets every field the format has, so that the golden file pins every on-disk name.
func fullManifest() *Manifest {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	img := &Image{Key: "k1", KernelPackage: "/var/cache/k.deb", KernelSHA256: "ks", AgentSHA256: "as", KernelVersion: "6.1.0-57-amd64"}
	edit := &containerdcfg.ImportEdit{Offset: 12, Text: "\"/etc/containerd/conf.d/kata-deploy-kata.toml\", ", BeforeSHA256: "cb", AfterSHA256: "ca"}
	return &Manifest{
		SchemaVersion: SchemaVersion, Version: "v1.2.3", Prefix: goldenPrefix, RuntimeName: "kata", Default: true,
		State: StateInstalled, Created: t0, Updated: t0.Add(time.Minute),
		Dirs: []string{goldenPrefix, goldenPrefix + "/versions"},
		Files: []File{
			{Path: goldenPrefix + "/versions/a/bin/containerd-shim-kata-v2", SHA256: "s1", Size: 42, Mode: 0o755, PendingSHA256: "s2",
				Previous: &Previous{SHA256: "s0", SavedAs: goldenPrefix + "/shim.orig"}},
		},
		Scratch: []string{goldenPrefix + "/versions/a/share/kata-deploy/.build"},
		Image:   img,
		DaemonJSON: &registration.State{Path: "/etc/docker/daemon.json", Created: true, Backup: "/etc/docker/daemon.json.kata-deploy.bak",
			Changes: []daemonjson.Change{
				{Key: "/runtimes", Before: json.RawMessage("null"), After: json.RawMessage("{}")},
				{Key: "/runtimes/kata", After: json.RawMessage("{\n    \"runtimeType\": \"/a&b/é\", \"n\": 9007199254740993\n  }")},
			},
			Pending: &registration.Pending{BeforeSHA256: "db", AfterSHA256: "da",
				Changes: []daemonjson.Change{{Key: "/default-runtime", Before: json.RawMessage(`"runc"`), After: json.RawMessage(`"kata"`)}}},
		},
		Layout: LayoutVersioned, Current: "a", Previous: "b",
		Versions: []Version{{ID: "a", Created: t0, KataDeployVersion: "v1.2.3", Ready: true, Image: img, Factory: &Factory{Template: true}}, {ID: "b", Created: t0}},
		Switch:   &Switch{To: "a", Previous: "b"},
		Links:    []Link{{Path: goldenPrefix + "/current", Target: "versions/b", PendingTarget: "versions/a"}},
		Source:   SourceUpstream,
		Upstream: &Upstream{Tarball: "/tmp/kata-static-3.18.0-amd64.tar.zst", SHA256: "us", Version: "3.18.0", Dir: "/opt/kata",
			Staging: "/opt/.kata-staging", Aside: "/opt/kata.aside", Placed: true,
			Shim: "/opt/kata/bin/containerd-shim-kata-v2", Config: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"},
		Engine: EngineContainerd,
		Containerd: &containerdcfg.State{Config: "/etc/containerd/config.toml", ConfigVersion: 3, ConfigCreated: true,
			Import: edit, PendingImport: edit, DropIn: "/etc/containerd/conf.d/kata-deploy-kata.toml", RestartNeeded: true},
		Plugin: &Plugin{Name: "kata-block", Binary: goldenPrefix + "/plugins/kata-plugins", StateDir: "/var/lib/kata-deploy/plugins/block",
			SocketDir: "/run/docker/plugins", Mode: PluginProcess, Unit: "/etc/systemd/system/kata-plugins.service", UnitSHA256: "us",
			PID: 42, StartTime: 4242, Log: goldenPrefix + "/plugins/kata-block.log", CreatedDirs: []string{"/var/lib/kata-deploy"}},
		RuntimeDirs: []string{"/run/kata-deploy", "/run/kata-deploy.cache"},
		Journal:     []Entry{{Time: t0, Step: "shim", Status: "started"}, {Time: t0, Step: "shim", Status: "failed", Error: "boom"}},
	}
}

func goldenPath() string {
	return filepath.Join("testdata", fmt.Sprintf("manifest-v%d.json", SchemaVersion))
}

// The golden manifest decodes to every field set and re-encodes byte for byte: a renamed field
// here or in a package whose state the manifest records fails this test.
func TestGoldenRoundTrip(t *testing.T) {
	if *update {
		data, err := encode(fullManifest())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	if want := fullManifest(); !reflect.DeepEqual(m, want) {
		t.Errorf("%s decodes to\n%+v\nwant\n%+v", goldenPath(), m, want)
	}
	again, err := encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, golden) {
		t.Errorf("%s re-encodes differently:\n%s", goldenPath(), again)
	}
}

// Every field of Manifest has its field in record, in the same order: a field added to one
// only would be lost on disk.
func TestRecordMirrorsManifest(t *testing.T) {
	mt, rt := reflect.TypeOf(Manifest{}), reflect.TypeOf(record{})
	if mt.NumField() != rt.NumField() {
		t.Fatalf("Manifest has %d fields, record %d", mt.NumField(), rt.NumField())
	}
	for i := range mt.NumField() {
		if m, r := mt.Field(i).Name, rt.Field(i).Name; m != r {
			t.Errorf("field %d: Manifest.%s, record.%s", i, m, r)
		}
	}
}

// Values that the golden file does not show survive the conversion as they were.
func TestRecordConversion(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *Manifest
	}{
		{"nothing registered", &Manifest{SchemaVersion: 1}},
		{"pending write without changes", &Manifest{DaemonJSON: &registration.State{Path: "/d", Pending: &registration.Pending{}}}},
		{"empty change lists", &Manifest{DaemonJSON: &registration.State{Changes: []daemonjson.Change{},
			Pending: &registration.Pending{Changes: []daemonjson.Change{}}}}},
		{"absent values", &Manifest{DaemonJSON: &registration.State{Changes: []daemonjson.Change{{Key: "/k"}}}}},
		{"containerd without import", &Manifest{Containerd: &containerdcfg.State{Config: "/c", ConfigVersion: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromRecord(toRecord(tc.m)); !reflect.DeepEqual(got, tc.m) {
				t.Errorf("got %+v, want %+v", got, tc.m)
			}
		})
	}
}

// Changes survive the manifest byte for byte, including white space and characters
// encoding/json would HTML-escape, and absent values stay absent.
func TestChangesKeepTheirBytes(t *testing.T) {
	in := []daemonjson.Change{
		{Key: "", Before: json.RawMessage("{ }"), After: json.RawMessage("{}")},
		{Key: "/runtimes/kata", After: json.RawMessage("{\n  \"path\": \"/a&b<c>\"\n}")},
		{Key: "/default-runtime", Before: json.RawMessage(`"r\u00e9"`)},
	}
	data, err := encode(&Manifest{SchemaVersion: SchemaVersion, DaemonJSON: &registration.State{Changes: in}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if out := m.DaemonJSON.Changes; !reflect.DeepEqual(out, in) {
		t.Errorf("changes %+v became %+v (%s)", in, out, data)
	}
}
