package agent

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Logger writes kernel-log records ("<level>kata-agent: ...") so that the
// agent's messages land in the guest's dmesg and, by level, on its console.
// Errors always go out; debug lines only with the kernel parameter
// agent.debug=1. A nil *Logger discards everything.
type Logger struct {
	mu    sync.Mutex
	w     io.Writer
	debug bool
}

// Kernel log levels used as record prefixes (see syslog(2)).
const (
	levelErr    = 3
	levelNotice = 5
)

// NewLogger returns a logger writing one record per Write to w, usually
// /dev/kmsg.
func NewLogger(w io.Writer, debug bool) *Logger {
	return &Logger{w: w, debug: debug}
}

// Debugging reports whether debug lines are written.
func (l *Logger) Debugging() bool { return l != nil && l.debug }

// Debugf logs a line only when debugging.
func (l *Logger) Debugf(format string, args ...any) {
	if l.Debugging() {
		l.write(levelNotice, format, args...)
	}
}

// Infof logs a line always, below the console's level under "quiet": it
// is in dmesg but not on the console.
func (l *Logger) Infof(format string, args ...any) {
	if l != nil {
		l.write(levelNotice, format, args...)
	}
}

// Errorf logs a line always.
func (l *Logger) Errorf(format string, args ...any) {
	if l != nil {
		l.write(levelErr, format, args...)
	}
}

func (l *Logger) write(level int, format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	// /dev/kmsg takes one record per write; keep multi-line messages on one.
	msg = strings.ReplaceAll(msg, "\n", " | ")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "<%d>kata-agent: %s\n", level, msg)
}

// logWriter adapts the logger for libraries that want an io.Writer (yamux).
type logWriter struct{ l *Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Errorf("%s", p)
	return len(p), nil
}
