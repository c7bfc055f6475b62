package agent_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agent"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// restoreClient serves one session of a server whose Restored hook is restored.
func restoreClient(t *testing.T, exec *fakeExecutor, restored func(agentproto.Restored) error) *agentproto.Client {
	t.Helper()
	srv := agent.NewServer(agent.ServerConfig{
		Version: "test", Executor: exec, Log: agent.NewLogger(&syncBuffer{}, true), Restored: restored,
	})
	hostEnd, guestEnd := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		srv.ServeConn(ctx, guestEnd)
		guestEnd.Close()
	}()
	c, err := agentproto.NewClient(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
	})
	return c
}

func TestRestored(t *testing.T) {
	entropy := bytes.Repeat([]byte{7}, agentproto.RestoreEntropyLen)
	t.Run("the hook gets the host's entropy and time", func(t *testing.T) {
		exec := &fakeExecutor{scripts: fakeScripts()}
		var got []agentproto.Restored
		c := restoreClient(t, exec, func(r agentproto.Restored) error { got = append(got, r); return nil })
		before := time.Now().UnixNano()
		if err := c.Restored(testCtx(t), entropy); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !bytes.Equal(got[0].Entropy, entropy) || got[0].UnixNano < before || got[0].UnixNano > time.Now().UnixNano() {
			t.Fatalf("the hook got %+v", got)
		}
		// A template's agent has mounted nothing when it is saved: QEMU cannot migrate a
		// mounted 9p export. Shares are mounted by the first create.
		if len(exec.mounts) != 0 {
			t.Errorf("shares mounted before any container: %v", exec.mounts)
		}
	})
	t.Run("an agent without the hook refuses", func(t *testing.T) {
		c := restoreClient(t, &fakeExecutor{scripts: fakeScripts()}, nil)
		if err := c.Restored(testCtx(t), entropy); err == nil || !strings.Contains(err.Error(), "cannot reseed") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("short entropy is refused before it is sent", func(t *testing.T) {
		called := false
		c := restoreClient(t, &fakeExecutor{scripts: fakeScripts()}, func(agentproto.Restored) error { called = true; return nil })
		if err := c.Restored(testCtx(t), entropy[:8]); err == nil || called {
			t.Fatalf("got %v, hook called %v", err, called)
		}
	})
}
