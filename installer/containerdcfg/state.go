package containerdcfg

// State is what kata-deploy changed in containerd's configuration; the install manifest stores
// it, so that uninstall reverts exactly that.
type State struct {
	// Config is containerd's main configuration file.
	Config string
	// ConfigVersion is its version (2 or 3): the drop-in is written in the same one.
	ConfigVersion int
	// ConfigCreated: the main configuration did not exist; install created it with the imports
	// entry only, and uninstall removes it again when it still holds just that.
	ConfigCreated bool
	// Import is the edit that added the drop-in to the main configuration's imports; nil when
	// an existing entry (a glob, say) already covered it.
	Import *ImportEdit
	// PendingImport is an import edit journaled before the write that makes it.
	PendingImport *ImportEdit
	// DropIn is the drop-in file that registers the runtime.
	DropIn string
	// RestartNeeded: the files changed since containerd last (re)started; a run killed before the
	// restart leaves it set, and the next run restarts.
	RestartNeeded bool
}

// ImportEdit is text spliced into the main configuration: Text at byte Offset of the file whose
// checksum was BeforeSHA256, giving AfterSHA256.
type ImportEdit struct {
	Offset       int
	Text         string
	BeforeSHA256 string
	AfterSHA256  string
}
