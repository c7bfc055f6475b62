package shim

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// containerd reads the features from `-info` and dockerd's rro check needs "rro" among them.
func TestInfoReportsOCIFeatures(t *testing.T) {
	info, err := Manager{}.Info(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Features == nil {
		t.Fatal("no OCI features in the runtime info")
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features are a %T", v)
	}
	if !slices.Contains(f.MountOptions, "rro") {
		t.Errorf("mount options %q lack rro", f.MountOptions)
	}
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || *e {
		t.Error("idmap mounts claimed: the agent does not do them")
	}
}
