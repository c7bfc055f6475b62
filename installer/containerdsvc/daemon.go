// Package containerdsvc finds the containerd serving a socket and acts on it for the installer:
// which configuration file it reads, its version, what its configuration looks like once merged
// with the imports (`containerd config dump`), and a restart (through systemd when systemd runs
// it; otherwise the user is told what to do). containerd reloads its configuration only when it
// starts: there is no SIGHUP reload as with dockerd.
package containerdsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
)

// containerd's defaults.
const (
	DefaultAddress = "/run/containerd/containerd.sock"
	DefaultConfig  = "/etc/containerd/config.toml"
)

// DefaultRestartTimeout bounds the wait for containerd to serve its socket again.
const DefaultRestartTimeout = 60 * time.Second

// Daemon is the containerd serving Address, or the one that will when it starts.
type Daemon struct {
	Address string
	// PID is the process serving Address; 0 when nothing does.
	PID int
	// Config is the main configuration it reads: its --config, else the default.
	Config string
	// Binary is its executable (or containerd in $PATH when it is not running); "" if unknown.
	Binary string
	// Args is its command line, for the restart instructions.
	Args []string
	// RestartTimeout bounds Restart's wait (DefaultRestartTimeout when zero).
	RestartTimeout time.Duration
	procRoot       string
}

// Find locates the containerd at address ("" for the default socket). config overrides the
// configuration file for a containerd that is not running; for a running one it must be the file
// the process reads.
func Find(address, config string) (*Daemon, error) {
	if address == "" {
		address = DefaultAddress
	}
	d := &Daemon{Address: address, procRoot: "/proc"}
	pid, err := dockerd.PeerPID(address)
	if err != nil {
		d.Config = config
		if d.Config == "" {
			d.Config = DefaultConfig
		}
		d.Binary, _ = exec.LookPath("containerd")
		return d, nil
	}
	p, err := dockerd.ReadProcess(d.procRoot, pid)
	if err != nil {
		return nil, fmt.Errorf("reading the containerd process (pid %d) serving %s: %w", pid, address, err)
	}
	bin, err := trustedBinary(p)
	if err != nil {
		return nil, err
	}
	d.PID, d.Binary, d.Args = pid, bin, p.Args
	d.Config = ConfigFlag(p.Args)
	if d.Config == "" {
		d.Config = DefaultConfig
	} else if !filepath.IsAbs(d.Config) && p.Cwd != "" {
		d.Config = filepath.Join(p.Cwd, d.Config)
	}
	if config != "" && filepath.Clean(config) != d.Config {
		return nil, fmt.Errorf("the containerd serving %s (pid %d) reads %s, not %s: a runtime registered there would never be loaded; drop --containerd-config, or point --containerd-address at the containerd that reads it", address, pid, d.Config, config)
	}
	return d, nil
}

// ConfigFlag is the value of --config (-c) on a containerd command line, "" when absent.
func ConfigFlag(args []string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case a == "--config" || a == "-c":
			if i+1 < len(args) {
				return args[i+1]
			}
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-c="):
			return strings.TrimPrefix(a, "-c=")
		}
	}
	return ""
}

// ConfigFile is the main configuration the daemon reads.
func (d *Daemon) ConfigFile() string { return d.Config }

// Running reports whether a containerd serves the socket.
func (d *Daemon) Running() bool { return d.PID > 0 }

var versionPattern = regexp.MustCompile(`\bv?(\d+)\.\d+\.\d+`)

// MajorVersion runs `containerd --version` and returns the major version.
func (d *Daemon) MajorVersion(ctx context.Context) (int, error) {
	if d.Binary == "" {
		return 0, errors.New("containerd is not running and not in $PATH")
	}
	cmd := exec.CommandContext(ctx, d.Binary, "--version")
	cmd.Env, cmd.Dir = commandEnv, "/"
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", d.Binary, err)
	}
	return ParseMajor(string(out))
}

// ParseMajor reads the major version from `containerd --version` output, e.g.
// "containerd github.com/containerd/containerd/v2 2.4.2+unknown" or
// "containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da".
func ParseMajor(out string) (int, error) {
	m := versionPattern.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no version in %q", strings.TrimSpace(out))
	}
	return strconv.Atoi(m[1])
}

// Dump runs `containerd --config <Config> config dump`: the configuration as containerd will
// load it, imports merged and migrated to its newest version. It checks the files without
// touching the running daemon, as `dockerd --validate` does for daemon.json.
func (d *Daemon) Dump(ctx context.Context) ([]byte, error) {
	if d.Binary == "" {
		return nil, errors.New("cannot check the configuration: no containerd binary (not running, not in $PATH)")
	}
	cmd := exec.CommandContext(ctx, d.Binary, "--config", d.Config, "config", "dump")
	cmd.Env, cmd.Dir = commandEnv, "/"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s --config %s config dump: %w: %s", d.Binary, d.Config, err, lastLines(stderr.String(), 3))
	}
	return out, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// Restart is what Restart did.
type Restart struct {
	// Restarted: systemd restarted containerd and it serves its socket again.
	Restarted bool `json:"restarted"`
	// Unit is the systemd unit restarted.
	Unit string `json:"unit,omitempty"`
	// Pending: containerd runs outside systemd and must be restarted by the user (Hint says how).
	Pending bool   `json:"pending"`
	Hint    string `json:"hint,omitempty"`
}

// Restart restarts containerd so that it loads its configuration: `systemctl restart` when
// systemd runs it, then a wait for the socket; otherwise nothing, and a hint for the user.
func (d *Daemon) Restart(ctx context.Context) (Restart, error) {
	if !d.Running() {
		return Restart{Hint: "containerd is not running: it loads the configuration when it starts"}, nil
	}
	unit := d.systemdUnit(ctx)
	if unit == "" {
		return Restart{Pending: true, Hint: fmt.Sprintf("containerd (pid %d) is not run by systemd: restart it to load the configuration (it was started as: %s)",
			d.PID, strings.Join(d.Args, " "))}, nil
	}
	if out, err := exec.CommandContext(ctx, "systemctl", "restart", unit).CombinedOutput(); err != nil {
		return Restart{Unit: unit}, fmt.Errorf("systemctl restart %s: %w: %s (journalctl -u %s says why)", unit, err, strings.TrimSpace(string(out)), unit)
	}
	if err := d.waitServing(ctx); err != nil {
		return Restart{Unit: unit}, err
	}
	return Restart{Restarted: true, Unit: unit}, nil
}

// systemdUnit is the service that runs containerd, when systemd runs it: the unit of its cgroup,
// confirmed by the unit's MainPID.
func (d *Daemon) systemdUnit(ctx context.Context) string {
	data, err := os.ReadFile(filepath.Join(d.procRoot, strconv.Itoa(d.PID), "cgroup"))
	if err != nil {
		return ""
	}
	unit := UnitOfCgroup(string(data))
	if unit == "" {
		return ""
	}
	out, err := exec.CommandContext(ctx, "systemctl", "show", "--property", "MainPID", "--value", unit).Output()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(d.PID) {
		return ""
	}
	return unit
}

// UnitOfCgroup is the systemd service named by a /proc/PID/cgroup file ("" when none).
func UnitOfCgroup(cgroup string) string {
	for _, line := range strings.Split(cgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, elem := range strings.Split(parts[2], "/") {
			if strings.HasSuffix(elem, ".service") {
				return elem
			}
		}
	}
	return ""
}

// waitServing waits until a process other than the old one serves the socket.
func (d *Daemon) waitServing(ctx context.Context) error {
	timeout := d.RestartTimeout
	if timeout == 0 {
		timeout = DefaultRestartTimeout
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if pid, err := dockerd.PeerPID(d.Address); err == nil && pid != d.PID {
			d.PID = pid
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("containerd did not serve %s again within %s of its restart: check `journalctl -u containerd`", d.Address, timeout)
}

// Serving reports whether something accepts connections on the socket.
func (d *Daemon) Serving() bool {
	c, err := net.DialTimeout("unix", d.Address, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// StartedAt is when the containerd process started (zero when not running or unknown).
func (d *Daemon) StartedAt() time.Time {
	if !d.Running() {
		return time.Time{}
	}
	return processStart(d.procRoot, d.PID)
}

// userHZ is the unit of /proc/PID/stat times: 100 on every Linux architecture kata-deploy runs on.
const userHZ = 100

// processStart reads a process's start time from /proc (boot time plus its start in ticks).
func processStart(procRoot string, pid int) time.Time {
	stat, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return time.Time{}
	}
	// The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}
	}
	boot := bootTime(procRoot)
	if boot.IsZero() {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * time.Second / userHZ)
}

func bootTime(procRoot string) time.Time {
	data, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}
