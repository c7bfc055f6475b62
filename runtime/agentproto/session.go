package agentproto

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// sessionConfig is shared by both ends so that they agree on windows and
// timeouts.
//
// Keepalive is off: a paused VM, or a guest that has not opened its port yet,
// would otherwise make the host drop a healthy session. StreamOpenTimeout is
// off too: the host may open a stream before the agent runs (QEMU holds the
// bytes until the guest opens the port), and the caller's context bounds the
// wait instead. ConnectionWriteTimeout stays as a guard against a peer that
// stopped reading the channel altogether; TCG guests are slow, so it is long.
func sessionConfig(logOutput io.Writer) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.StreamOpenTimeout = 0
	cfg.ConnectionWriteTimeout = 2 * time.Minute
	cfg.MaxStreamWindowSize = 1 << 20
	if logOutput == nil {
		logOutput = io.Discard
	}
	cfg.LogOutput = logOutput
	return cfg
}

// NewServerSession starts the agent's end of a session over conn.
func NewServerSession(conn io.ReadWriteCloser, logOutput io.Writer) (*yamux.Session, error) {
	return yamux.Server(conn, sessionConfig(logOutput))
}
