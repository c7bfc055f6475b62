// Package registration registers a runtime in the daemon.json of a running dockerd, and takes it
// out again, without ever leaving Docker with a file it refuses or a half-applied change.
//
// Register validates the new file (dockerd --validate where the daemon supports it), backs the
// old one up, journals the change (State.Pending) before the atomic write and records it
// (State.Changes) after, then reloads dockerd (SIGHUP after subscribing to its reload event) and
// checks that GET /info lists the runtime. Any failure after the write reverts exactly the changes
// just made and reloads again, so the daemon ends where it started.
//
// Unregister reverts the recorded changes with daemonjson.Revert, so later edits by the user
// survive, and performs the two-write unload dance that package describes when the original file
// lacked "runtimes" or "default-runtime". Every step is idempotent: a process killed at any point
// leaves a valid daemon.json and a State from which Register or Unregister run again to the end
// (call Reconcile first to settle a write that was journaled but may not have happened).
//
// The daemon is reached through the small Daemon interface, so the sequencing is tested against
// a fake that models dockerd's reload rules.
package registration
