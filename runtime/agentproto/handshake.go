package agentproto

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// A session starts with a handshake below yamux:
//
//	host  -> agent: HelloMagic, then nothing until it has read ReadyMagic
//	agent -> host:  ReadyMagic, then the yamux session starts on both sides
//
// ReadyMagic ends with the agent's ProtocolVersion: the host refuses an agent that speaks another
// one before any request (an agent that ignored a field it does not know, a compiled seccomp filter
// say, would run a container less confined than asked).
//
// The channel is a byte pipe that outlives host connections: after a host
// goes away, the agent may still be writing frames of the old session, and
// a new host may connect before the agent noticed the old one left. The
// host therefore discards everything before ReadyMagic, and the agent
// discards everything before HelloMagic and ends its session when a hello
// arrives in the middle of one. Both magics start with 0xff, which can
// never begin a yamux frame (version 0), so a hello is recognized at a frame
// boundary without looking into payloads. The hello that ends a session is
// read in full by the next session's AwaitHello (see HelloWatcher.Rest): it
// may arrive in pieces, and its tail must not be taken for yamux frames.
const (
	HelloMagic  = "\xffkata-deploy-agent:hello:1\n"
	readyPrefix = "\xffkata-deploy-agent:ready:"
)

// ReadyMagic is the agent's answer to the hello: readyPrefix, its ProtocolVersion and a newline.
var ReadyMagic = readyPrefix + strconv.Itoa(ProtocolVersion) + "\n"

// AwaitHello reads r until the host's hello, discarding what precedes it
// (left-overs of an earlier session). The host sends nothing after its
// hello until it reads ReadyMagic, so nothing after the hello is lost.
func AwaitHello(r io.Reader) error {
	return skipPast(bufio.NewReaderSize(r, 4096), HelloMagic)
}

// SendReady tells the host that the agent's session starts now.
func SendReady(w io.Writer) error {
	if _, err := io.WriteString(w, ReadyMagic); err != nil {
		return fmt.Errorf("send ready to the host: %w", err)
	}
	return nil
}

// awaitReady reads the agent's answer to the hello, discarding what precedes it, and checks the
// protocol version it ends with.
func awaitReady(br *bufio.Reader) error {
	if err := skipPast(br, readyPrefix); err != nil {
		return fmt.Errorf("wait for the agent: %w", err)
	}
	var version []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("read the agent's protocol version: %w", err)
		}
		if b == '\n' {
			break
		}
		if len(version) == maxVersionDigits {
			return fmt.Errorf("the agent's protocol version %q... is not a number", version)
		}
		version = append(version, b)
	}
	if string(version) != strconv.Itoa(ProtocolVersion) {
		return fmt.Errorf("the guest agent speaks protocol version %q and this runtime %d: the guest image and the runtime come from different builds; install them together (kata-deploy install or upgrade)", version, ProtocolVersion)
	}
	return nil
}

// maxVersionDigits bounds the protocol version a guest can send.
const maxVersionDigits = 6

// skipPast consumes br up to and including magic.
func skipPast(br *bufio.Reader, magic string) error {
	matched := 0
	for matched < len(magic) {
		b, err := br.ReadByte()
		if err != nil {
			return err
		}
		switch {
		case b == magic[matched]:
			matched++
		case b == magic[0]:
			matched = 1
		default:
			matched = 0
		}
	}
	return nil
}

// HelloWatcher passes the agent's incoming yamux bytes through and reports
// io.EOF once a new host says hello at a frame boundary: the current session
// is then over, and the next one starts with AwaitHello on Rest.
type HelloWatcher struct {
	r       io.Reader
	hdr     [yamuxHeaderSize]byte
	hdrN    int    // header bytes seen of the current frame
	payload uint32 // payload bytes still to pass of the current frame
	rest    []byte // from the hello on, once seen
}

const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// NewHelloWatcher wraps the agent's side of a channel.
func NewHelloWatcher(r io.Reader) *HelloWatcher { return &HelloWatcher{r: r} }

// SawHello reports whether the session ended because a new host said hello.
func (w *HelloWatcher) SawHello() bool { return w.rest != nil }

// Rest returns the bytes read from the new host's hello on (not nil once
// SawHello), or nil: they belong to the next session.
func (w *HelloWatcher) Rest() []byte { return w.rest }

func (w *HelloWatcher) Read(p []byte) (int, error) {
	if w.rest != nil {
		return 0, io.EOF
	}
	n, err := w.r.Read(p)
	for i := 0; i < n; {
		switch {
		case w.payload > 0:
			skip := min(uint32(n-i), w.payload)
			w.payload -= skip
			i += int(skip)
		case w.hdrN == 0 && p[i] == HelloMagic[0]:
			// A new host: hand over what belongs to the old session,
			// keep the hello for the next one, and end this one.
			w.rest = append([]byte{}, p[i:n]...)
			return i, nil
		default:
			w.hdr[w.hdrN] = p[i]
			w.hdrN++
			i++
			if w.hdrN == yamuxHeaderSize {
				w.hdrN = 0
				if w.hdr[1] == yamuxTypeData {
					w.payload = uint32(w.hdr[8])<<24 | uint32(w.hdr[9])<<16 | uint32(w.hdr[10])<<8 | uint32(w.hdr[11])
				}
			}
		}
	}
	return n, err
}
