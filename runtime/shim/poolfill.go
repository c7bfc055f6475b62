package shim

// The pool of clones is refilled by a detached process of the shim binary itself (FillPoolMain),
// not by the shim that took a clone: that shim ends with its container, often before the refill
// does, and a fill must not slow the container it serves. One filler runs at a time
// (sandbox.FillPool holds a lock); a second one started meanwhile returns at once.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// FillPoolEnv, set to "1", makes the shim binary fill the pool of clones (FillPoolMain) with the
// configuration it reads as JSON on stdin, instead of serving containerd.
const FillPoolEnv = runtimecache.FillPoolEnv

const (
	// fillTimeout bounds one filler's life: a pool of 16 clones under emulation fills in about a
	// minute, a template build takes one more.
	fillTimeout = 10 * time.Minute
	// fillLogName, in the pool directory, gets the fillers' output; fillLogCap bounds it.
	fillLogName = runtimecache.PoolFillLog
	fillLogCap  = 1 << 20
)

// startPoolFill starts a detached filler for cfg's pool; what goes wrong goes to logf and the
// fill log, never to the container.
func startPoolFill(cfg *config.Config, logf func(string, ...any)) {
	if err := spawnFiller(cfg); err != nil {
		logf("refilling the pool of clones: %v", err)
	}
}

func spawnFiller(cfg *config.Config) error {
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	pool := runtimecache.PoolDir(runtimecache.Dir(cfg.Runtime.StateDir))
	if err := os.MkdirAll(pool, 0o700); err != nil {
		return err
	}
	logFile, err := openFillLog(filepath.Join(pool, fillLogName))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{FillPoolEnv + "=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = bytes.NewReader(body)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = "/"
	// Its own session: containerd's signals to the shim's group do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startNiced(cmd, fillerNice); err != nil {
		return err
	}
	go cmd.Wait() // reaped here while this shim lives; by init after
	return nil
}

// fillerNice is the filler's CPU priority, and so its clones' while they start: the container
// that took a clone starts at the same time and comes first.
const fillerNice = 10

// startNiced starts cmd at the priority nice: it is forked from a thread of this process set to
// that priority for the moment (a Go program's threads all exist before its main runs, so the
// child could not lower its own for good).
func startNiced(cmd *exec.Cmd, nice int) error {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setting the filler's priority: %w", err)
	}
	err := cmd.Start()
	if unix.Setpriority(unix.PRIO_PROCESS, 0, 0) == nil {
		// Back to normal: the thread may serve other goroutines. Else it stays locked and
		// ends with this goroutine.
		runtime.UnlockOSThread()
	}
	return err
}

// openFillLog opens the fill log for appending, emptied first once it passed fillLogCap.
func openFillLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > fillLogCap {
		_ = f.Truncate(0)
	}
	return f, nil
}

// FillPoolMain is the filler process: it reads the runtime configuration (JSON) on stdin, fills
// its pool and returns the exit status.
func FillPoolMain(stdin io.Reader, stderr io.Writer) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s pid %d: %s\n", time.Now().UTC().Format(time.RFC3339Nano), os.Getpid(), fmt.Sprintf(format, args...))
	}
	body, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		logf("reading the configuration: %v", err)
		return 2
	}
	var cfg config.Config
	if err := json.Unmarshal(body, &cfg); err != nil {
		logf("reading the configuration: %v", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		logf("the configuration: %v", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	if err := sandbox.FillPool(ctx, &cfg, logf); err != nil {
		logf("filling the pool of clones: %v", err)
		return 1
	}
	return 0
}
