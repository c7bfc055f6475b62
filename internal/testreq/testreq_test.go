package testreq

import (
	"fmt"
	"strings"
	"testing"
)

// fakeT records what a helper did instead of ending the test.
type fakeT struct {
	skipped, failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestSkipfHonoursRequired(t *testing.T) {
	for _, tt := range []struct {
		env                 string
		wantSkip, wantFatal bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	} {
		t.Run("KATA_E2E_REQUIRED="+tt.env, func(t *testing.T) {
			t.Setenv(RequiredEnv, tt.env)
			f := &fakeT{}
			Skipf(f, "no %s", "thing")
			if (f.skipped != "") != tt.wantSkip || (f.failed != "") != tt.wantFatal {
				t.Fatalf("skipped %q, failed %q; want skip %v, fatal %v", f.skipped, f.failed, tt.wantSkip, tt.wantFatal)
			}
			if !strings.Contains(f.skipped+f.failed, "no thing") {
				t.Fatalf("the reason is lost: skipped %q, failed %q", f.skipped, f.failed)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	t.Setenv(RequiredEnv, "1")
	t.Setenv("PATH", t.TempDir())
	f := &fakeT{}
	Command(f, "mkfs.xfs")
	if !strings.Contains(f.failed, "apt-get install xfsprogs") {
		t.Fatalf("want a failure naming the package, got %q", f.failed)
	}
	f = &fakeT{}
	Command(f, "some-tool", "some-package")
	if !strings.Contains(f.failed, "apt-get install some-package") {
		t.Fatalf("want the given package, got %q", f.failed)
	}
}

func TestFile(t *testing.T) {
	t.Setenv(RequiredEnv, "")
	f := &fakeT{}
	File(f, t.TempDir(), "hint")
	if f.skipped != "" || f.failed != "" {
		t.Fatalf("an existing path was reported missing: %q %q", f.skipped, f.failed)
	}
	File(f, t.TempDir()+"/absent", "the hint")
	if !strings.Contains(f.skipped, "the hint") {
		t.Fatalf("want a skip with the hint, got %q", f.skipped)
	}
}

func TestEngine(t *testing.T) {
	t.Setenv(RequiredEnv, "1")
	t.Setenv("KATA_TEST_ENGINE", "")
	f := &fakeT{}
	Engine(f)
	if !strings.Contains(f.failed, "hack/engine.sh up") {
		t.Fatalf("want a failure saying how to start the engine, got %q", f.failed)
	}
}

// -short is the caller's choice: it skips even under KATA_E2E_REQUIRED=1 and never fails.
func TestShortNeverFails(t *testing.T) {
	t.Setenv(RequiredEnv, "1")
	f := &fakeT{}
	Short(f, "slow")
	if f.failed != "" || (testing.Short() != (f.skipped != "")) {
		t.Fatalf("short %v: skipped %q, failed %q", testing.Short(), f.skipped, f.failed)
	}
}
