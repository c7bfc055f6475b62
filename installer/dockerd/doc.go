// Package dockerd finds the dockerd that really serves a Docker Engine API socket and the
// daemon.json it reads.
//
// Several dockerd processes may run on one host (system, rootless, snap, a test engine), and the
// socket may have been created by systemd rather than by dockerd. The chain is: FindServer (or the
// lower-level PeerPID) names the process behind the socket, ReadProcess reads its command line,
// environment and identity from /proc, ParseDaemonFlags interprets the command line, and
// ResolveConfigFile says which daemon.json that process reads and whether it may be written.
package dockerd
