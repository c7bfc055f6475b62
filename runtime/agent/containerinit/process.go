package containerinit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultPath is used when the process's environment has no PATH.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// errNotFound is what a PATH search that found nothing reports.
var errNotFound = errors.New("executable file not found in $PATH")

// execProcess replaces the child with the user's program. It returns only
// on failure, after telling the user why on stderr, with the exit code a
// shell would use: 127 for not found, 126 for found but not executable.
// beforeExec, if set, is the very last step before execve (the seccomp
// filter): nothing but execve runs under it.
func execProcess(p *specs.Process, stderr io.Writer, beforeExec func() error) int {
	name := p.Args[0]
	pathEnv, ok := envValue(p.Env, "PATH")
	if !ok {
		pathEnv = DefaultPath
	}
	prog, err := lookPath(name, pathEnv, checkExecutable)
	if err != nil {
		fmt.Fprintf(stderr, "kata-agent: exec: %q: %v\n", name, err)
		return exitCode(err)
	}
	if beforeExec != nil {
		if err := beforeExec(); err != nil {
			fmt.Fprintf(stderr, "kata-agent: %v\n", err)
			return exitSetupFailed
		}
	}
	err = unix.Exec(prog, p.Args, p.Env)
	fmt.Fprintf(stderr, "kata-agent: exec %s: %v\n", prog, err)
	return exitCode(err)
}

func exitCode(err error) int {
	if errors.Is(err, errNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return exitNotFound
	}
	return exitCannotExec
}

// envValue returns the last value of key in a KEY=value list, as getenv does
// with duplicates resolved by the runtime's order.
func envValue(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// lookPath finds name like execvp: a name with a slash is used as is,
// otherwise each PATH entry is tried ("" meaning "."). A candidate that
// exists but cannot be executed is remembered: it is the error reported if
// nothing better is found.
func lookPath(name, pathEnv string, check func(string) error) (string, error) {
	if name == "" {
		return "", errNotFound
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			return "", err
		}
		return name, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		err := check(p)
		if err == nil {
			return p, nil
		}
		if denied == nil && errors.Is(err, fs.ErrPermission) {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", errNotFound
}

// checkExecutable accepts a regular file the current user may execute.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return &fs.PathError{Op: "exec", Path: p, Err: unix.EACCES}
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return &fs.PathError{Op: "exec", Path: p, Err: err}
	}
	return nil
}

// rlimitResource maps an OCI rlimit type to its resource number.
func rlimitResource(name string) (int, bool) {
	switch name {
	case "RLIMIT_CPU":
		return unix.RLIMIT_CPU, true
	case "RLIMIT_FSIZE":
		return unix.RLIMIT_FSIZE, true
	case "RLIMIT_DATA":
		return unix.RLIMIT_DATA, true
	case "RLIMIT_STACK":
		return unix.RLIMIT_STACK, true
	case "RLIMIT_CORE":
		return unix.RLIMIT_CORE, true
	case "RLIMIT_RSS":
		return unix.RLIMIT_RSS, true
	case "RLIMIT_NPROC":
		return unix.RLIMIT_NPROC, true
	case "RLIMIT_NOFILE":
		return unix.RLIMIT_NOFILE, true
	case "RLIMIT_MEMLOCK":
		return unix.RLIMIT_MEMLOCK, true
	case "RLIMIT_AS":
		return unix.RLIMIT_AS, true
	case "RLIMIT_LOCKS":
		return unix.RLIMIT_LOCKS, true
	case "RLIMIT_SIGPENDING":
		return unix.RLIMIT_SIGPENDING, true
	case "RLIMIT_MSGQUEUE":
		return unix.RLIMIT_MSGQUEUE, true
	case "RLIMIT_NICE":
		return unix.RLIMIT_NICE, true
	case "RLIMIT_RTPRIO":
		return unix.RLIMIT_RTPRIO, true
	case "RLIMIT_RTTIME":
		return unix.RLIMIT_RTTIME, true
	}
	return 0, false
}

// setRlimits applies the limits through package syscall, which also stops
// Go from restoring its saved RLIMIT_NOFILE at exec.
func setRlimits(limits []specs.POSIXRlimit) error {
	for _, l := range limits {
		res, ok := rlimitResource(l.Type)
		if !ok {
			return fmt.Errorf("rlimit %q is unknown", l.Type)
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("set %s to soft %d hard %d: %w", l.Type, l.Soft, l.Hard, err)
		}
	}
	return nil
}
