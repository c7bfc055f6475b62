package install

import (
	"os"
	"strings"
	"testing"
)

// The kernel package is trusted by its recorded SHA-256, never by its path, and the image is
// built from exactly the bytes that were hashed.
func TestKernelPackageIsCheckedByHash(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture) error
		want []string // in the error
	}{
		{name: "upgrade: the recorded package was swapped",
			run: func(t *testing.T, f *fixture) error {
				must(t, os.WriteFile(f.kernelDeb(), []byte("a kernel package of someone else's"), 0o644))
				f.newAgent(t, "agent v2")
				_, err := f.upgrade(func(o *UpgradeOptions) { o.Kernel = "" })
				return err
			},
			want: []string{"changed since", "put the original back", "--kernel"}},
		{name: "install again: the recorded package was swapped",
			run: func(t *testing.T, f *fixture) error {
				must(t, os.WriteFile(f.kernelDeb(), []byte("a kernel package of someone else's"), 0o644))
				_, err := f.install(func(o *InstallOptions) { o.Kernel = "" })
				return err
			},
			want: []string{"changed since"}},
		{name: "the package changes after it was hashed",
			run: func(t *testing.T, f *fixture) error {
				f.newAgent(t, "agent v2")
				_, err := f.upgrade(func(o *UpgradeOptions) {
					o.AfterStep = func(step string) {
						if step == StepShim {
							must(t, os.WriteFile(f.kernelDeb(), []byte("swapped after the plan"), 0o644))
						}
					}
				})
				return err
			},
			want: []string{"changed while installing", "nothing was built from it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []byte(`{}`))
			_, err := f.install(nil)
			must(t, err)
			builds := f.builds
			err = tt.run(t, f)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tt.want, f.kernelDeb()) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if f.builds != builds {
				t.Errorf("a guest image was built from it")
			}
		})
	}
}
