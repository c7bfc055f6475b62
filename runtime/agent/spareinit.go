package agent

// A spare init is containerinit started ahead of the container whose first process it becomes:
// in a pooled clone, after the throwaway container (OpWarm), so that the exec of the agent's
// binary and the start of its Go runtime (40-60 ms under emulation) are off the next container's
// path. It waits for its config as any new init does until the agent has confined it.
//
// Its namespaces were made when it started. Mount, pid, uts and ipc are new for every
// container's init whatever the spec (startInit), so two things make it unfit:
//   - the agent's mount table changed since (a share mounted for this container): the spare's
//     mount namespace is a copy made at its start and would miss the change;
//   - the container wants a terminal: the spare's stdio are pipes.
//
// An unfit spare is killed, and a new init is started as when there is none.
type spareInit struct {
	init   *startedInit
	mounts uint64 // NSExecutor.mountChanges when it started
}

// PrepareInit starts a spare init for the next container, in place of any earlier one.
func (e *NSExecutor) PrepareInit() error {
	s, err := e.startInit(false, 0)
	if err != nil {
		return err
	}
	e.mu.Lock()
	old := e.spare
	e.spare = &spareInit{init: s, mounts: e.mountChanges}
	e.mu.Unlock()
	if old != nil {
		old.init.discard()
	}
	return nil
}

// takeSpare returns the spare init if it fits a container with or without a terminal, else nil.
// Either way no spare is left.
func (e *NSExecutor) takeSpare(terminal bool) *startedInit {
	e.mu.Lock()
	sp := e.spare
	e.spare = nil
	changed := sp != nil && sp.mounts != e.mountChanges
	e.mu.Unlock()
	if sp == nil {
		return nil
	}
	var unfit string
	switch {
	case changed:
		unfit = "the mount table changed since it started"
	case terminal:
		unfit = "the container wants a terminal"
	case sp.init.reaped():
		unfit = "it exited"
	}
	if unfit != "" {
		e.log.Debugf("the init started ahead (pid %d) is not used: %s", sp.init.pid, unfit)
		sp.init.discard()
		return nil
	}
	e.log.Debugf("the container's init is the one started ahead (pid %d)", sp.init.pid)
	return sp.init
}

// dropSpare kills the spare init, if any.
func (e *NSExecutor) dropSpare() {
	e.mu.Lock()
	sp := e.spare
	e.spare = nil
	e.mu.Unlock()
	if sp != nil {
		sp.init.discard()
	}
}

// mountChanged records a change of the agent's mount table (a mount or an unmount that
// lasts): a spare init started before it no longer fits.
func (e *NSExecutor) mountChanged() {
	e.mu.Lock()
	e.mountChanges++
	e.mu.Unlock()
}
