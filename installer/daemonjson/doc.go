// Package daemonjson edits Docker's daemon.json to register and unregister a
// runtime without disturbing anything else in the file.
//
// # Surgical edits
//
// A Document keeps the file's exact text. Parse validates it with
// encoding/json (the parser dockerd uses) and a small scanner records the
// byte spans of the members; the setters splice only the value they change:
// the "runtimes" object, one runtime entry, or "default-runtime". Everything
// else stays byte-identical: key order, indentation, numbers such as
// 9007199254740993, escapes, '&' '<' '>', CRLF line ends, a missing final
// newline, a UTF-8 BOM or UTF-16 (written back in the same encoding). Only
// inserted text is formatted, in the style detected from the file (tabs, two
// or four spaces, or single-line).
//
// Parse refuses, with line and column, what dockerd would refuse in the part
// it edits, and never repairs anything: invalid JSON (*SyntaxError), a top
// level that is not an object, "runtimes" or an entry that is not an object,
// "default-runtime" that is not a string (*TypeError), and duplicate
// "runtimes" / "default-runtime" keys or runtime names (ErrDuplicateKey:
// dockerd would silently use or merge one copy, so editing the other would
// do nothing). Duplicates elsewhere are left alone. "runtimes": null and
// "default-runtime": null are what dockerd treats as absent, and so does this
// package: SetRuntime replaces the null and Revert puts it back.
//
// # Changes and Revert
//
// Every setter returns the Changes it made (JSON Pointer key, exact bytes
// before and after). kata-deploy stores them in its manifest; Revert undoes
// them newest first, each only if the value still equals what was written.
// Values the user edited since are left and reported (RevertResult.Kept),
// so later edits survive an uninstall, unlike a whole-file .bak restore.
// Inserting and removing are exact inverses, so on an untouched file
// Revert(install(x)) == x byte for byte; to make that hold for `{ }` or a
// file without "runtimes", creating or normalising an empty object is itself
// a recorded Change.
//
// # Unloading (two writes on uninstall)
//
// dockerd reloads "runtimes" on SIGHUP only if the key is present, and
// "default-runtime" only if it is non-empty. Restoring a file that had
// neither would leave kata loaded (and the default) in the running daemon.
// So when the reverted document lacks one of them while the install had set
// it, RevertResult.Unload holds an intermediate document: the reverted one
// plus "runtimes": {} and/or "default-runtime": "runc". The caller writes
// Unload, sends SIGHUP, waits for the reload event, then writes
// Document.Bytes() (the original bytes; no further SIGHUP is needed since
// the two files mean the same to Docker). If the process dies between the
// writes, the file on disk is the valid Unload document; running Revert again
// on it with the same changes finishes the job (a "runc" default where the
// key was absent counts as reverted). A file kata-deploy created reverts to
// no bytes at all; deleting it is the caller's (manifest's) decision.
//
// # Files
//
// ReadFile, WriteFileAtomic and Backup do the I/O: symlinks followed (the
// target is written, the link kept), atomic replace through a synced temp
// file in the same directory with the original mode and owner, synced
// directory, and backups that are never wider than the original and never
// overwrite one another.
package daemonjson
