package agentproto

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestReady: Ready waits for the agent's answer to the hello, not for a request: it returns
// once the agent sent ReadyMagic (after a previous session's leftovers), fails within its
// context while the agent is silent, and reports a channel that closed before the answer.
func TestReady(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		host, agent := channel(t)
		c, err := NewClient(host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := AwaitHello(agent); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Write([]byte("bytes of an earlier session" + ReadyMagic)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("Ready after the agent answered: %v", err)
		}
	})
	t.Run("silent", func(t *testing.T) {
		host, agent := channel(t)
		c, err := NewClient(host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := AwaitHello(agent); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := c.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ready with a silent agent: %v, want the context's deadline", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		host, agent := channel(t)
		c, err := NewClient(host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := AwaitHello(agent); err != nil {
			t.Fatal(err)
		}
		agent.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = c.Ready(ctx)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ready on a channel closed before the answer: %v, want the handshake's error", err)
		}
	})
}
