package agent

// MountChangedForTest records a change of the mount table, as a share mounted for a container
// would (spareinit.go).
func (e *NSExecutor) MountChangedForTest() { e.mountChanged() }
