package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ConsoleLogCap bounds what the guest's serial console can take on the host: QEMU writes ttyS0 to
// a socket, the shim drains it into console.log and, once that holds half the cap, moves it to
// console.log.1 and starts a new one. The last half to full cap of the output is kept, and nothing
// the guest prints grows the host's storage beyond the cap. Should the shim die, QEMU drops what
// the guest prints (a listening socket without a client discards writes).
const ConsoleLogCap = 1 << 20

// consoleDrainGrace is how long Stop waits for the drain to reach the end of the console stream.
const consoleDrainGrace = 2 * time.Second

// startConsole connects to QEMU's console socket and copies the guest's console into the capped
// log until QEMU closes it. The returned channel is closed when the copy has ended.
func startConsole(ctx context.Context, sock, logPath string) (<-chan struct{}, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connecting to the console socket %s: %w", sock, err)
	}
	w, err := newCappedLog(logPath, ConsoleLogCap)
	if err != nil {
		conn.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close()
		defer w.Close()
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(w, conn, buf) // ends when QEMU exits
	}()
	return done, nil
}

// cappedLog is a file that never holds more than limit bytes together with its one rotated copy.
type cappedLog struct {
	path string
	half int64
	f    *os.File
	size int64
}

func newCappedLog(path string, limit int64) (*cappedLog, error) {
	c := &cappedLog{path: path, half: max(limit/2, 1)}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cappedLog) open() error {
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("opening the console log: %w", err)
	}
	c.f, c.size = f, 0
	return nil
}

// Write stores p, rotating as often as needed; it reports len(p) written even when the log keeps
// only its end.
func (c *cappedLog) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if c.f == nil {
			return total - len(p), errors.New("console log closed")
		}
		if c.size >= c.half {
			c.f.Close()
			c.f = nil
			if err := os.Rename(c.path, c.path+rotatedSuffix); err != nil {
				return total - len(p), err
			}
			if err := c.open(); err != nil {
				return total - len(p), err
			}
		}
		n := int(min(int64(len(p)), c.half-c.size))
		k, err := c.f.Write(p[:n])
		c.size += int64(k)
		p = p[k:]
		if err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

func (c *cappedLog) Close() error {
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}

// rotatedSuffix names the previous half of the console log.
const rotatedSuffix = ".1"

// readConsoleTail returns the last n bytes of the console log, reaching into its rotated half when
// the current one is shorter.
func readConsoleTail(path string, n int64) string {
	cur := readTail(path, n)
	if int64(len(cur)) >= n {
		return cur
	}
	return readTail(path+rotatedSuffix, n-int64(len(cur))) + cur
}
