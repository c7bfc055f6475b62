// Package containerdcfg registers a runtime with containerd's CRI plugin through its configuration
// files, for Kubernetes nodes without Docker: a drop-in file declaring the runtime, imported by
// the main configuration (config.toml).
//
// The main configuration is edited losslessly: the only change is the drop-in's path spliced into
// the top-level "imports" array (or an "imports" line added), recorded as an ImportEdit so that
// uninstall removes exactly that text and the file is byte for byte what it was. Nothing is
// re-encoded, so the user's comments, key order and quoting survive.
//
// containerd names the CRI plugin that holds runtimes differently by configuration version:
// "io.containerd.grpc.v1.cri" in version 2 (containerd 1.x), "io.containerd.cri.v1.runtime" in
// versions 3 and 4 (containerd 2.x). Each imported file is migrated by containerd from its own
// "version", so the drop-in is written in the main configuration's version.
package containerdcfg
