package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/network"
)

// StartNetwork wires the container's network namespace (QEMU's, where Docker put the container's
// links between task Create and Start) into the VM: a NIC per link, configured in the guest, and
// the relay for Docker's embedded DNS when the container's resolv.conf uses it. Call it at task
// Start, before the process starts. It keeps following `docker network connect/disconnect` until
// the VM or the agent session ends; logf receives what goes wrong then.
//
// bundle is the container's OCI bundle: its config.json names the resolv.conf Docker wrote.
// A pooled QEMU's move into the container's host cgroup, begun at Create, is waited for first.
func (s *Sandbox) StartNetwork(ctx context.Context, bundle string, logf func(format string, args ...any)) error {
	// The container's process runs in QEMU's host cgroup from its start on.
	if err := s.awaitPlaced(); err != nil {
		return err
	}
	spec, err := readBundleSpec(bundle)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-s.VM.Done():
		case <-s.Agent.Done():
		}
		close(done)
	}()
	_, err = network.Start(ctx, network.Options{
		NetNSPath: fmt.Sprintf("/proc/%d/ns/net", s.VM.PID),
		VM:        s.VM,
		Agent:     s.Agent,
		DNS:       func() bool { return usesDockerDNS(spec) },
		Done:      done,
		Logf:      logf,
		Spare:     s.spareNIC,
	})
	if err != nil {
		return fmt.Errorf("wiring the container's network into the VM: %w", err)
	}
	return nil
}

// readBundleSpec reads the OCI spec of the bundle.
func readBundleSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the container's spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("reading the container's spec %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &spec, nil
}

// refuseJoinedNetNS refuses a spec that joins another process's network namespace: the VM would
// run in it and wiring would redirect the other container's traffic into this VM.
func refuseJoinedNetNS(spec *specs.Spec) error {
	if p := joinedNetNS(spec); p != "" {
		return fmt.Errorf("the container joins the network namespace of another process (%s, --network container:<name>), which a VM cannot share: give it its own network (a user-defined network, the default bridge or --network none), and reach the other container through that network", p)
	}
	return nil
}

// joinedNetNS returns the path of another process's network namespace the spec joins, or "".
// Docker >= 26 leaves the path empty for a container with a network of its own (the runtime
// creates the namespace) and sets /proc/<pid>/ns/net of the other container for
// --network container:<name>; older Dockers pass their own /var/run/docker/netns/<id> files.
func joinedNetNS(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && strings.HasPrefix(ns.Path, "/proc/") {
			return ns.Path
		}
	}
	return ""
}

// usesDockerDNS reports whether the resolv.conf the spec mounts names Docker's embedded DNS
// server. Only then does the guest need the relay, which takes 127.0.0.11:53 in the guest.
func usesDockerDNS(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if m.Destination == "/etc/resolv.conf" {
			return namesDockerDNS(m.Source)
		}
	}
	return false
}

// maxResolvConf is how much of a resolv.conf is read.
const maxResolvConf = 64 << 10

// namesDockerDNS reports whether the resolv.conf at path has "nameserver 127.0.0.11".
func namesDockerDNS(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	// The file is bind-mounted into the guest, writable: its size is the guest's choice, and it
	// is read again every 200 ms after a network change. A resolv.conf is a few lines.
	sc := bufio.NewScanner(io.LimitReader(f, maxResolvConf))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" && fields[1] == agentproto.DockerDNS {
			return true
		}
	}
	return false
}
