package shim

import (
	"context"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
)

var (
	fuzzOps = []string{"create", "start", "kill", "delete", "exec", "state", "wait", "exit", "pids", "stats",
		"pause", "resume", "closeio", "resize", "connect", "shutdown"}
	fuzzIDs     = []string{"c1", "c2", ""}
	fuzzExecIDs = []string{"", "e1", "e2", "e3"}
	fuzzArgs    = []int{sigkill, sigterm, 0, 1, 137, 2}
)

// fuzzSteps decodes two bytes per step: the operation, then the container, exec id and argument.
func fuzzSteps(data []byte) []step {
	var steps []step
	for i := 0; i+1 < len(data) && len(steps) < 64; i += 2 {
		b := int(data[i+1])
		steps = append(steps, step{
			op:   fuzzOps[int(data[i])%len(fuzzOps)],
			id:   fuzzIDs[b%len(fuzzIDs)],
			exec: fuzzExecIDs[(b/len(fuzzIDs))%len(fuzzExecIDs)],
			arg:  fuzzArgs[(b/(len(fuzzIDs)*len(fuzzExecIDs)))%len(fuzzArgs)],
		})
	}
	return steps
}

// encodeSteps is fuzzSteps' inverse, for readable seeds.
func encodeSteps(steps ...step) []byte {
	var data []byte
	for _, st := range steps {
		b := index(fuzzIDs, st.id) + len(fuzzIDs)*(index(fuzzExecIDs, st.exec)+len(fuzzExecIDs)*index(fuzzArgs, st.arg))
		data = append(data, byte(index(fuzzOps, st.op)), byte(b))
	}
	return data
}

func index[T comparable](s []T, v T) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

// FuzzTaskService runs random sequences of task API calls, with random ids, against a service
// whose guest is a fake: no call may panic or hang, and an init's exit is published at most once
// per container created.
func FuzzTaskService(f *testing.F) {
	f.Add(encodeSteps(step{op: "create", id: "c1"}, step{op: "start", id: "c1"}, step{op: "exit", id: "c1"},
		step{op: "wait", id: "c1"}, step{op: "delete", id: "c1"}))
	f.Add(encodeSteps(step{op: "create", id: "c1"}, step{op: "kill", id: "c1", arg: sigkill}, step{op: "start", id: "c1"},
		step{op: "delete", id: "c1"}, step{op: "create", id: "c1"}))
	f.Add(encodeSteps(step{op: "create", id: "c1"}, step{op: "start", id: "c1"}, step{op: "exec", id: "c1", exec: "e1"},
		step{op: "start", id: "c1", exec: "e1"}, step{op: "kill", id: "c1", arg: sigkill}, step{op: "delete", id: "c1", exec: "e1"},
		step{op: "delete", id: "c1"}))
	f.Add(encodeSteps(step{op: "shutdown"}, step{op: "create", id: "c2"}, step{op: "start", id: "c2"}, step{op: "pause", id: "c2"},
		step{op: "exit", id: "c2", exec: "e2"}, step{op: "resume", id: "c2"}, step{op: "stats", id: "c2"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t)
		steps := fuzzSteps(data)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, st := range steps {
				h.do(context.Background(), st, 10*time.Millisecond)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the task service hung on %+v", steps)
		}
		checkExitsPublishedOnce(t, h, steps)
	})
}

// checkExitsPublishedOnce: containerd must never see two exits of one init.
func checkExitsPublishedOnce(t *testing.T, h *harness, steps []step) {
	creates := map[string]int{}
	exits := map[string]int{}
	for _, e := range h.pub.snapshot() {
		switch e := e.(type) {
		case *eventstypes.TaskCreate:
			creates[e.ContainerID]++
		case *eventstypes.TaskExit:
			if e.ID == e.ContainerID {
				exits[e.ID]++
			}
		}
	}
	for id, n := range exits {
		if n > creates[id] {
			t.Errorf("container %s: %d exits published for %d creates; steps %+v", id, n, creates[id], steps)
		}
	}
}
