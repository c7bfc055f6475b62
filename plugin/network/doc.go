// Package network is the kata-net network driver (a Docker remote network driver served with
// go-plugins-helpers). A network is a Linux bridge of its own in the engine's network namespace,
// holding the gateway address Docker's IPAM chose, with forwarding and masquerading rules for its
// subnet; an endpoint is a veth pair whose host end is a port of that bridge and whose other end
// Docker moves into the container's namespace. runc containers use the veth as it is; the kata
// runtime connects its VM to it like to any veth (runtime/network). Networks and endpoints are
// persisted (renameio) and reconciled at start: bridges and rules of known networks are made
// again after a reboot, links of unknown ones are removed. Join never calls Docker's API.
package network
