package hypervisor

// govmmLog passes govmm's log to Config.Logf: errors and warnings always,
// the rest (QEMU's command line, QMP traffic) with Debug only.
type govmmLog struct {
	logf  func(format string, args ...any)
	debug bool
}

func (g govmmLog) V(level int32) bool { return g.debug && g.logf != nil }

func (g govmmLog) Infof(format string, v ...any) {
	if g.debug {
		g.emit("govmm: "+format, v...)
	}
}

func (g govmmLog) Warningf(format string, v ...any) { g.emit("govmm warning: "+format, v...) }
func (g govmmLog) Errorf(format string, v ...any)   { g.emit("govmm error: "+format, v...) }

func (g govmmLog) emit(format string, v ...any) {
	if g.logf != nil {
		g.logf(format, v...)
	}
}
