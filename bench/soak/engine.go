package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// engine is the test engine the soak runs against, as hack/engine.sh's env file describes it.
type engine struct {
	dockerdPidfile    string
	containerdPidfile string
	// netnsDir is where dockerd keeps its containers' network namespaces (under its exec-root).
	netnsDir string
	// netns is the engine's own network namespace name (a dedicated instance), or "".
	netns string
}

func engineFromEnv() (engine, error) {
	pidfile := os.Getenv("KATA_TEST_DOCKERD_PIDFILE")
	if pidfile == "" {
		return engine{}, fmt.Errorf("KATA_TEST_DOCKERD_PIDFILE is not set: source the env file of hack/engine.sh up")
	}
	run := filepath.Dir(pidfile)
	e := engine{
		dockerdPidfile:    pidfile,
		containerdPidfile: filepath.Join(run, "containerd.pid"),
		netnsDir:          filepath.Join(run, "exec", "netns"),
	}
	if p := os.Getenv("KATA_TEST_ENGINE_NETNS"); p != "" {
		e.netns = filepath.Base(p)
	}
	return e, nil
}

// ipCommand runs ip in the engine's network namespace: where dockerd's bridges and veths live.
func (e engine) ipCommand(args ...string) *exec.Cmd {
	if e.netns != "" {
		args = append([]string{"-n", e.netns}, args...)
	}
	return exec.Command("ip", args...)
}

func (e engine) tcCommand(args ...string) *exec.Cmd {
	if e.netns != "" {
		args = append([]string{"-n", e.netns}, args...)
	}
	return exec.Command("tc", args...)
}

// daemonDescriptors counts dockerd's and containerd's open descriptors by kind of target
// (socket, pipe, anon_inode:…) or path, so that a leak reads as what it is.
func (e engine) daemonDescriptors() (map[string]int, error) {
	out := map[string]int{}
	for name, pidfile := range map[string]string{"dockerd": e.dockerdPidfile, "containerd": e.containerdPidfile} {
		pid, err := readPid(pidfile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("%s's descriptors: %w", name, err)
		}
		for _, fd := range entries {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue // closed meanwhile
			}
			out[name+" "+descriptorKind(target)]++
		}
	}
	return out, nil
}

var inodeSuffix = regexp.MustCompile(`:\[\d+\]$`)

// descriptorKind drops the inode number of sockets and pipes, which differs for every new one.
func descriptorKind(target string) string {
	return inodeSuffix.ReplaceAllString(target, "")
}

func readPid(pidfile string) (int, error) {
	data, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds no pid", pidfile)
	}
	return pid, nil
}

// restart stops one of the engine's daemons and starts it again (hack/engine.sh restart).
func (e engine) restart(daemon string) error {
	cmd := exec.Command("hack/engine.sh", "restart", daemon)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restarting %s: %w", daemon, err)
	}
	return nil
}
