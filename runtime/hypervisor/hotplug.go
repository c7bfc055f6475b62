package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/kata-containers/govmm/qemu"
)

// NICSlots is how many network cards a VM can have at once. Every NIC is
// hot-plugged (Docker configures the container's network after the VM has
// booted), and on q35 a hot-plugged PCIe device needs a PCIe root port of
// its own, created at boot. Eight covers containers on several networks;
// each port costs little (a bus number and a bridge window the guest sets
// up at boot).
const NICSlots = 8

// NIC is a network card to hot-plug, backed by a tap device.
type NIC struct {
	// ID names the QEMU netdev and device: 1-32 letters, digits, '_' or
	// '-', starting with a letter.
	ID string
	// MAC is the address the guest's NIC gets.
	MAC net.HardwareAddr
	// Tap is an open queue of the tap device (IFF_TAP|IFF_NO_PI, with
	// IFF_VNET_HDR for offloads). QEMU receives a copy; the caller keeps
	// and closes its own.
	Tap *os.File
}

var nicIDPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

func (n NIC) validate() error {
	if !nicIDPattern.MatchString(n.ID) {
		return fmt.Errorf("NIC id %q is invalid: use 1-32 letters, digits, '_' or '-', starting with a letter", n.ID)
	}
	if len(n.MAC) != 6 {
		return fmt.Errorf("NIC %s: MAC %q is not an Ethernet address", n.ID, n.MAC)
	}
	if n.Tap == nil {
		return fmt.Errorf("NIC %s: no tap file", n.ID)
	}
	return nil
}

// ErrNoNICSlot means every slot for hot-plugged NICs is taken.
var ErrNoNICSlot = errors.New("no free slot for another network card")

// nicSlots tracks which hot-plug slot each NIC occupies.
type nicSlots struct {
	mu    sync.Mutex
	taken [NICSlots]string // NIC id per slot, "" = free
}

func (s *nicSlots) claim(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := -1
	for i, have := range s.taken {
		if have == id {
			return -1, fmt.Errorf("NIC %s is already plugged", id)
		}
		if have == "" && free < 0 {
			free = i
		}
	}
	if free < 0 {
		return -1, fmt.Errorf("%w: the VM has %d, all in use; connect the container to fewer networks", ErrNoNICSlot, NICSlots)
	}
	s.taken[free] = id
	return free, nil
}

func (s *nicSlots) find(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, have := range s.taken {
		if have == id {
			return i
		}
	}
	return -1
}

func (s *nicSlots) release(slot int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken[slot] = ""
}

// isQ35 tells the PCIe machine (q35, pc-q35-7.2, ...) from i440fx ("pc").
func isQ35(machine string) bool {
	return machine == "q35" || strings.HasPrefix(machine, "pc-q35-")
}

// isI440FX is the conventional PCI machine, whose root bus takes
// hot-plugged devices directly (ACPI hot-plug).
func isI440FX(machine string) bool {
	return machine == "pc" || strings.HasPrefix(machine, "pc-i440fx-")
}

// rootPortID names the i-th PCIe root port.
func rootPortID(i int) string { return "rp" + strconv.Itoa(i) }

// rootPorts are the PCIe root ports NICs are hot-plugged into (q35 only:
// its root complex takes no hot-plugged devices). QEMU hot-plugs into
// them through ACPI by default, which the guest kernel handles in well
// under a second; native PCIe hot-plug would add a 5-second attention
// button delay.
func rootPorts(machine string) []qemu.Device {
	if !isQ35(machine) {
		return nil
	}
	var devs []qemu.Device
	for i := range NICSlots {
		devs = append(devs, qemu.PCIeRootPortDevice{ID: rootPortID(i), Chassis: strconv.Itoa(i + 1), Slot: "0"})
	}
	return devs
}

// hotplugBus is the bus the NIC in slot goes on.
func hotplugBus(machine string, slot int) (string, error) {
	switch {
	case isQ35(machine):
		return rootPortID(slot), nil
	case isI440FX(machine):
		return "pci.0", nil
	default:
		return "", fmt.Errorf("machine type %q has no PCI hot-plug this runtime knows: use q35 for networking", machine)
	}
}

// QMP object names of a NIC.
func nicNetdevID(id string) string { return "netdev-" + id }
func nicFdName(id string) string   { return "fd-" + id }

// AddNIC hot-plugs a virtio-net card backed by nic.Tap. It returns once QEMU
// added the device; the guest's driver picks it up a moment later (find it
// by MAC). vhost-net is not used: /dev/vhost-net is often absent, and the
// tap path works everywhere.
func (vm *VM) AddNIC(ctx context.Context, nic NIC) error {
	if err := nic.validate(); err != nil {
		return err
	}
	slot, err := vm.nics.claim(nic.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", &vm.cfg, err)
	}
	bus, err := hotplugBus(vm.cfg.MachineType, slot)
	if err != nil {
		vm.nics.release(slot)
		return err
	}
	netdev := nicNetdevID(nic.ID)
	err = vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error {
		if err := q.ExecuteGetFD(ctx, nicFdName(nic.ID), nic.Tap); err != nil {
			return fmt.Errorf("passing the tap to QEMU: %w", err)
		}
		if err := q.ExecuteNetdevAddByFds(ctx, "tap", netdev, []string{nicFdName(nic.ID)}, nil); err != nil {
			return fmt.Errorf("netdev_add: %w", err)
		}
		// No option ROM: the guest boots from the kernel, and the ROM file
		// would cost guest memory and a file lookup.
		if err := q.ExecuteNetPCIDeviceAdd(ctx, netdev, nic.ID, nic.MAC.String(), "", bus, "", 0, false); err != nil {
			_ = q.ExecuteNetdevDel(ctx, netdev)
			return fmt.Errorf("device_add virtio-net-pci on %s: %w", bus, err)
		}
		return nil
	})
	if err != nil {
		vm.nics.release(slot)
		return fmt.Errorf("%s: hot-plugging NIC %s (%s): %w", &vm.cfg, nic.ID, nic.MAC, err)
	}
	return nil
}

// RemoveNIC unplugs a NIC AddNIC plugged: the guest ejects the device, then
// QEMU drops its tap (which vanishes once the caller closed its copy). The
// slot is freed only once the guest let go of the device; ctx bounds the
// wait for the guest.
func (vm *VM) RemoveNIC(ctx context.Context, id string) error {
	slot := vm.nics.find(id)
	if slot < 0 {
		return fmt.Errorf("%s: NIC %s is not plugged", &vm.cfg, id)
	}
	err := vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error {
		if err := q.ExecuteDeviceDel(ctx, id); err != nil {
			return fmt.Errorf("device_del (the guest did not eject the card): %w", err)
		}
		if err := q.ExecuteNetdevDel(ctx, nicNetdevID(id)); err != nil {
			return fmt.Errorf("netdev_del: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: unplugging NIC %s: %w", &vm.cfg, id, err)
	}
	vm.nics.release(slot)
	return nil
}
