package agentproto

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestReady: Ready waits for the agent's answer to the hello, not for a request: it returns
// once the agent sent ReadyMagic (after a previous session's leftovers), fails within its
// context while the agent is silent, and reports a channel that closed before the answer and an
// agent of another protocol version.
func TestReady(t *testing.T) {
	tests := []struct {
		name    string
		agent   func(agent net.Conn) error // after the agent read the hello
		timeout time.Duration
		check   func(err error) bool
	}{
		{"answered", func(a net.Conn) error {
			_, err := a.Write([]byte("bytes of an earlier session" + ReadyMagic))
			return err
		}, 10 * time.Second, func(err error) bool { return err == nil }},
		{"silent", func(net.Conn) error { return nil }, 100 * time.Millisecond,
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"closed", func(a net.Conn) error { return a.Close() }, 10 * time.Second,
			func(err error) bool { return err != nil && !errors.Is(err, context.DeadlineExceeded) }},
		{"an agent of another protocol version", func(a net.Conn) error {
			_, err := a.Write([]byte(readyPrefix + "1\n"))
			return err
		}, 10 * time.Second, func(err error) bool { return err != nil && strings.Contains(err.Error(), "different builds") }},
		{"a version that never ends", func(a net.Conn) error {
			_, err := a.Write([]byte(readyPrefix + "1234567890"))
			return err
		}, 10 * time.Second, func(err error) bool { return err != nil && strings.Contains(err.Error(), "not a number") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, agent := channel(t)
			c, err := NewClient(host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := AwaitHello(agent); err != nil {
				t.Fatal(err)
			}
			if err := tt.agent(agent); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			if err := c.Ready(ctx); !tt.check(err) {
				t.Fatalf("Ready: %v", err)
			}
		})
	}
}
