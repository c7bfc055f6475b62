package hypervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kata-deploy/kata-deploy/internal/qemusandbox"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
)

// sandboxProbe is the cached answer for one QEMU binary: valid while the
// binary at Path has the same size and modification time.
type sandboxProbe struct {
	Path    string              `json:"path"`
	Size    int64               `json:"size"`
	ModTime int64               `json:"modTimeNs"`
	Support qemusandbox.Support `json:"support"`
}

// qemuSandbox returns which -sandbox options the QEMU binary supports,
// probed once per binary and cached in cacheDir ("" probes every time).
// What is missing is logged: the VM then runs with what is available.
func qemuSandbox(ctx context.Context, c *Config) qemusandbox.Support {
	s := probeQEMUSandbox(ctx, c)
	if !s.Complete() {
		c.logf("WARNING: %s runs with a partial seccomp sandbox (-sandbox %q; missing %v: %s)",
			c.QEMUPath, s.Arg(), s.Missing, s.Reason)
	}
	return s
}

func probeQEMUSandbox(ctx context.Context, c *Config) qemusandbox.Support {
	fi, err := os.Stat(c.QEMUPath)
	if err != nil {
		return qemusandbox.Probe(ctx, c.QEMUPath)
	}
	key := sandboxProbe{Path: c.QEMUPath, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	file := ""
	if c.CacheDir != "" {
		sum := sha256.Sum256([]byte(c.QEMUPath))
		file = filepath.Join(c.CacheDir, runtimecache.SandboxProbePrefix+hex.EncodeToString(sum[:8])+".json")
		if s, ok := readSandboxProbe(file, key); ok {
			return s
		}
	}
	key.Support = qemusandbox.Probe(ctx, c.QEMUPath)
	if file != "" {
		if err := writeSandboxProbe(file, key); err != nil {
			c.logf("cache the QEMU sandbox probe: %v", err)
		}
	}
	return key.Support
}

func readSandboxProbe(file string, key sandboxProbe) (qemusandbox.Support, bool) {
	// Trusted only as root wrote it: a forged answer would turn the
	// sandbox off.
	if fi, err := os.Lstat(file); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 ||
		fi.Sys().(*syscall.Stat_t).Uid != 0 {
		return qemusandbox.Support{}, false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return qemusandbox.Support{}, false
	}
	var got sandboxProbe
	if json.Unmarshal(b, &got) != nil || got.Path != key.Path || got.Size != key.Size || got.ModTime != key.ModTime {
		return qemusandbox.Support{}, false
	}
	return got.Support, true
}

// writeSandboxProbe replaces file atomically, 0600: several shims may
// probe at once.
func writeSandboxProbe(file string, p sandboxProbe) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+runtimecache.SandboxProbePrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("rename %s: %w", file, err)
	}
	return nil
}
