package agent

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// procStdio holds both ends of a new process's stdio until it is started.
type procStdio struct {
	parent  Stdio
	child   [3]*os.File // stdin, stdout, stderr of the child
	pty     *os.File    // the master, with a terminal (after the handshake)
	closers []*os.File  // parent ends, closed on failure
}

// newStdio makes pipes. A process with a terminal gets /dev/null for now:
// it opens its pty itself, in the container's devpts, and sends the master
// back (see usePty).
func newStdio(terminal bool) (*procStdio, error) {
	s := &procStdio{}
	if terminal {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open /dev/null: %w", err)
		}
		s.child = [3]*os.File{null, null, null}
		return s, nil
	}
	var ends [3][2]*os.File
	for i := range ends {
		r, w, err := os.Pipe()
		if err != nil {
			s.closeChild()
			s.closeParent()
			return nil, fmt.Errorf("create stdio pipes: %w", err)
		}
		ends[i] = [2]*os.File{r, w}
		if i == 0 {
			s.child[0] = r
			s.closers = append(s.closers, w)
		} else {
			s.child[i] = w
			s.closers = append(s.closers, r)
		}
	}
	s.parent = Stdio{Stdin: ends[0][1], Stdout: ends[1][0], Stderr: ends[2][0]}
	return s, nil
}

// usePty takes the pty master the child sent.
func (s *procStdio) usePty(fd int, size *specs.Box) error {
	if err := unix.SetNonblock(fd, true); err != nil { // pollable, for the output copy
		unix.Close(fd)
		return fmt.Errorf("set up the pty master: %w", err)
	}
	master := os.NewFile(uintptr(fd), "ptmx")
	s.closers = append(s.closers, master)
	if size != nil {
		if err := setWinsize(master, uint32(size.Width), uint32(size.Height)); err != nil {
			return err
		}
	}
	s.pty = master
	// The master is stdin and output at once: closing "stdin" must not
	// close it; the output copy does when the process side is gone.
	s.parent = Stdio{Stdin: ptyInput{master}, Stdout: master, Terminal: true}
	return nil
}

// closeChild closes the child's ends once the child has them (or failed).
func (s *procStdio) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range s.child {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

func (s *procStdio) closeParent() {
	for _, f := range s.closers {
		f.Close()
	}
}

type ptyInput struct{ *os.File }

func (ptyInput) Close() error { return nil }

func setWinsize(f *os.File, width, height uint32) error {
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	if err := control(f, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("set the terminal size to %dx%d: %w", width, height, err)
	}
	return nil
}

// control runs fn on f's descriptor without switching f to blocking mode
// (which File.Fd would do).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
