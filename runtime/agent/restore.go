package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// A VM restored from a template continues from the template's memory: its random number
// generator holds the same state as every other clone's, and its clock is the template's. The
// host's first request to a clone fixes both.

func (s *Server) restored(req agentproto.Request) error {
	if err := req.Restored.Validate(); err != nil {
		return err
	}
	if s.cfg.Restored == nil {
		return errors.New("this agent cannot reseed a restored VM")
	}
	return s.cfg.Restored(*req.Restored)
}

// applyRestored credits the host's entropy to the guest's generator and forces a reseed (adding
// entropy alone leaves the ChaCha state, and so /dev/urandom's output, as every clone's until
// the next scheduled reseed), then sets the clock.
func applyRestored(r agentproto.Restored, log *Logger) error {
	if err := reseed(r.Entropy); err != nil {
		return err
	}
	// The request's travel time is the error left: well under a millisecond over virtio-serial.
	ts := unix.NsecToTimespec(r.UnixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set the guest clock: %w", err)
	}
	log.Debugf("restored from a template: generator reseeded, clock set to %s", time.Unix(0, r.UnixNano).UTC().Format(time.RFC3339Nano))
	return nil
}

// reseed adds entropy with RNDADDENTROPY (struct rand_pool_info: entropy count in bits, buffer
// size, then the bytes) and reseeds with RNDRESEEDCRNG.
func reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(buf[0:], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(entropy)))
	copy(buf[8:], entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return fmt.Errorf("add the host's entropy (RNDADDENTROPY): %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("reseed the generator (RNDRESEEDCRNG): %w", e)
	}
	return nil
}
