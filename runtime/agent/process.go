package agent

import (
	"context"
	"errors"
	"io"
	"sync"
)

// proc is the server's view of one process: its stdio plumbing and its
// final status, reported only once output is fully delivered.
type proc struct {
	p      Process
	term   bool
	stdin  *inPipe
	stdout *outPipe
	stderr *outPipe // nil with a terminal

	mu      sync.Mutex
	started bool

	done   chan struct{} // closed when exited and output drained
	status int
	// afterExit, if set, runs once the process exited, before done is closed; synced records
	// that it succeeded.
	afterExit func() error
	synced    bool
}

// newProc wires p's stdio. Output is copied from the start (a prepared
// process writes nothing before Start); it goes to whatever stream is
// attached at the time, or nowhere.
func newProc(p Process, afterExit func() error) *proc {
	s := p.Stdio()
	pr := &proc{p: p, term: s.Terminal, done: make(chan struct{}), afterExit: afterExit}
	pr.stdin = &inPipe{w: s.Stdin}
	pr.stdout = newOutPipe()
	go pr.stdout.copyFrom(s.Stdout)
	if s.Stderr != nil {
		pr.stderr = newOutPipe()
		go pr.stderr.copyFrom(s.Stderr)
	}
	go pr.monitor()
	return pr
}

func (pr *proc) monitor() {
	<-pr.p.Exited()
	pr.stdin.close()
	<-pr.stdout.done
	if pr.stderr != nil {
		<-pr.stderr.done
	}
	pr.status = pr.p.ExitStatus()
	if pr.afterExit != nil {
		pr.synced = pr.afterExit() == nil
	}
	close(pr.done)
}

// start executes the process once; later calls are errors.
func (pr *proc) start() (int, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.started {
		return 0, errors.New("process already started")
	}
	select {
	case <-pr.p.Exited():
		return 0, errors.New("process exited before start")
	default:
	}
	pr.started = true
	pr.stdin.start()
	if err := pr.p.Start(); err != nil {
		return 0, err
	}
	return pr.p.Pid(), nil
}

func (pr *proc) exited() bool {
	select {
	case <-pr.p.Exited():
		return true
	default:
		return false
	}
}

// wait returns the exit status once the process exited and its output was
// delivered and the output streams were closed.
func (pr *proc) wait(ctx context.Context) (int, error) {
	select {
	case <-pr.done:
		return pr.status, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// outPipe copies one output of a process to the attached stream, if any.
type outPipe struct {
	mu       sync.Mutex
	w        io.WriteCloser
	finished bool
	done     chan struct{}
}

func newOutPipe() *outPipe { return &outPipe{done: make(chan struct{})} }

// attach makes w the destination. announce runs under the lock before any
// output is written to w (the server writes its answer line there).
func (o *outPipe) attach(w io.WriteCloser, announce func() error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w != nil {
		return errors.New("stream already attached")
	}
	if err := announce(); err != nil {
		return err
	}
	if o.finished {
		return w.Close() // nothing more will come: EOF right away
	}
	o.w = w
	return nil
}

// detach drops w (the host closed it); later output is discarded.
func (o *outPipe) detach(w io.WriteCloser) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w == w {
		o.w = nil
	}
}

func (o *outPipe) copyFrom(r io.ReadCloser) {
	defer close(o.done)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			o.write(buf[:n])
		}
		if err != nil { // EOF, or EIO from a pty whose slave is closed
			break
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = true
	if o.w != nil {
		o.w.Close()
		o.w = nil
	}
}

func (o *outPipe) write(p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w == nil {
		return
	}
	if _, err := o.w.Write(p); err != nil {
		// The host is gone: keep draining so the process never blocks.
		o.w.Close()
		o.w = nil
	}
}

// inPipe feeds an attached stream to the process's stdin. For a terminal
// the executor hands a stdin whose Close does nothing (the pty master also
// carries the output).
type inPipe struct {
	mu      sync.Mutex
	w       io.WriteCloser // the process's stdin
	src     io.Reader
	srcDone io.Closer
	started bool
	closed  bool
}

// attach sets the source; before start it is held until start.
func (in *inPipe) attach(src io.Reader, closer io.Closer, announce func() error) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.src != nil {
		return errors.New("stdin already attached")
	}
	if err := announce(); err != nil {
		return err
	}
	if in.closed {
		return closer.Close()
	}
	in.src, in.srcDone = src, closer
	if in.started {
		go in.copy()
	}
	return nil
}

// start begins copying; without an attached stream the process reads EOF,
// as it would under runc without an open stdin.
func (in *inPipe) start() {
	in.mu.Lock()
	in.started = true
	src := in.src
	in.mu.Unlock()
	if src != nil {
		go in.copy()
	} else {
		in.close()
	}
}

func (in *inPipe) copy() {
	io.Copy(in.w, in.src)
	in.close()
	in.srcDone.Close()
}

// close closes the process's stdin once.
func (in *inPipe) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	in.closed = true
	in.w.Close()
}
