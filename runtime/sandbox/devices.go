package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// What `docker run --device` can give a VM. A host block device becomes a virtio-blk disk of
// the guest (as upstream Kata does), renumbered by the agent. A character device drives host
// hardware the guest cannot reach, except the kernel's virtual ones, which the guest kernel has
// under the same numbers: those are the guest's own. Anything else is refused at create.

// guestCharDevices are the character devices every kernel provides under the same numbers.
var guestCharDevices = map[[2]int64]string{
	{1, 3}: "null", {1, 5}: "zero", {1, 7}: "full", {1, 8}: "random", {1, 9}: "urandom",
	{5, 0}: "tty", {5, 2}: "ptmx", {10, 200}: "net/tun", {10, 229}: "fuse",
}

// hostDevices are the spec's devices as the VM gets them.
type hostDevices struct {
	blocks []hypervisor.Block
	devs   []agentproto.Device
	// dropped counts the devices of a privileged container left on the host.
	dropped int
}

// hostBlockPath finds the host's node of a block device by its numbers; var for tests.
var hostBlockPath = hostBlockNode

// planDevices decides what each device of spec becomes and returns the guest's device list.
// A privileged container gets every host device in its spec: those a VM cannot have are left
// out (the VM's own devices are its host devices), as upstream Kata's
// privileged_without_host_devices does; for any other container they are an error.
func planDevices(spec *specs.Spec) (*hostDevices, []specs.LinuxDevice, error) {
	h := &hostDevices{}
	if spec.Linux == nil {
		return h, nil, nil
	}
	privileged := allowsAllDevices(spec.Linux.Resources)
	var guest []specs.LinuxDevice
	for _, d := range spec.Linux.Devices {
		switch {
		case (d.Type == "c" || d.Type == "u") && guestCharDevices[[2]int64{d.Major, d.Minor}] != "":
			guest = append(guest, d)
		case privileged:
			h.dropped++
		case d.Type == "b":
			if err := h.addBlock(d, writable(spec.Linux.Resources, d)); err != nil {
				return nil, nil, err
			}
			guest = append(guest, d)
		default:
			return nil, nil, fmt.Errorf("device %s (%s %d:%d) cannot be given to a VM: a VM container gets host block devices (as virtio-blk disks) and the kernel's virtual character devices (%s); run this container with --runtime=runc to use it",
				d.Path, deviceKind(d.Type), d.Major, d.Minor, charDeviceNames())
		}
	}
	return h, guest, nil
}

func (h *hostDevices) addBlock(d specs.LinuxDevice, rw bool) error {
	src, err := hostBlockPath(d.Major, d.Minor)
	if err != nil {
		return fmt.Errorf("device %s (block %d:%d): %w", d.Path, d.Major, d.Minor, err)
	}
	tag := "kdev" + strconv.Itoa(len(h.blocks))
	h.blocks = append(h.blocks, hypervisor.Block{ID: tag, Path: src, ReadOnly: !rw, Device: true})
	h.devs = append(h.devs, agentproto.Device{Tag: tag, ContainerPath: filepath.Clean(d.Path), HostMajor: d.Major, HostMinor: d.Minor})
	return nil
}

// hostBlockNode returns /dev/<name> for a block device, after checking that it is the device
// with these numbers: the name comes from sysfs, the node from devtmpfs.
func hostBlockNode(major, minor int64) (string, error) {
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err != nil {
		return "", fmt.Errorf("the host has no such block device: %w", err)
	}
	name := ueventDevName(uevent)
	if name == "" || !filepath.IsLocal(name) {
		return "", fmt.Errorf("sysfs gives no usable device name (%q)", name)
	}
	p := filepath.Join("/dev", name)
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || int64(unix.Major(st.Rdev)) != major || int64(unix.Minor(st.Rdev)) != minor {
		return "", fmt.Errorf("%s is not block device %d:%d", p, major, minor)
	}
	return p, nil
}

func ueventDevName(uevent []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(uevent))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok {
			return v
		}
	}
	return ""
}

// allowsAllDevices reports a device cgroup that allows everything: Docker's --privileged.
func allowsAllDevices(r *specs.LinuxResources) bool {
	if r == nil {
		return false
	}
	for _, rule := range r.Devices {
		if rule.Allow && (rule.Type == "" || rule.Type == "a") && rule.Major == nil && rule.Minor == nil && strings.Contains(rule.Access, "w") {
			return true
		}
	}
	return false
}

// writable applies the device cgroup rules in order, as the kernel does, to learn whether the
// container may write d (--device SRC:DST:r gives a read-only disk).
func writable(r *specs.LinuxResources, d specs.LinuxDevice) bool {
	if r == nil {
		return true
	}
	w := false
	for _, rule := range r.Devices {
		if !ruleMatches(rule, d) || !strings.Contains(rule.Access, "w") {
			continue
		}
		w = rule.Allow
	}
	return w
}

func ruleMatches(rule specs.LinuxDeviceCgroup, d specs.LinuxDevice) bool {
	if rule.Type != "" && rule.Type != "a" && rule.Type != d.Type {
		return false
	}
	return (rule.Major == nil || *rule.Major == d.Major) && (rule.Minor == nil || *rule.Minor == d.Minor)
}

func deviceKind(t string) string {
	switch t {
	case "b":
		return "block"
	case "c", "u":
		return "char"
	}
	return "type " + strconv.Quote(t)
}

func charDeviceNames() string {
	names := make([]string, 0, len(guestCharDevices))
	for _, n := range guestCharDevices {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// guestWithDevices returns spec with its own linux section holding devices.
func guestWithDevices(spec *specs.Spec, devices []specs.LinuxDevice) *specs.Spec {
	if spec.Linux == nil {
		return spec
	}
	g := *spec
	l := *spec.Linux
	l.Devices = devices
	if l.Resources != nil {
		r := *l.Resources
		r.Devices = slices.Clone(r.Devices)
		l.Resources = &r
	}
	g.Linux = &l
	return &g
}
