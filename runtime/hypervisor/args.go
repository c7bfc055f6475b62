package hypervisor

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kata-containers/govmm/qemu"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// fastBootParams are the guest kernel parameters every VM gets before the
// caller's: serial console (kept short by "quiet"), no reboot on panic,
// and the Kata/Firecracker set that skips probing and self-tests a VM does
// not need.
func fastBootParams() []string {
	return []string{
		"console=ttyS0", "panic=-1", "quiet", "tsc=reliable", "no_timer_check",
		"rcupdate.rcu_expedited=1", "i8042.direct=1", "i8042.dumbkbd=1", "i8042.nopnp=1",
		"i8042.noaux=1", "noreplace-smp", "reboot=k", "cryptomgr.notests",
		"pci=lastbus=0",
		// The PCIe root ports for hot-plugged NICs (hotplug.go) need no
		// native port services (AER, PME, pciehp): QEMU hot-plugs through
		// ACPI. Skipping them saves about 10 ms of boot per port under TCG.
		"pcie_ports=compat",
		"nomodeset",
		// RAM hot-plugged by AddMemory (docker update --memory) is usable at once.
		"memhp_default_state=online",
		// The hot-plug range (-m ...,maxmem=) ends above 4 GiB, which makes the kernel reserve a
		// 64 MiB bounce buffer at boot for devices that cannot reach that high; virtio devices
		// reach all of it, and a VM sized for --memory 32m then has no room left to unpack its
		// initrd.
		"swiotlb=noforce",
	}
}

// kernelCmdline joins the built-in parameters with the caller's; Debug
// drops "quiet" so the console log shows the whole boot.
func kernelCmdline(extra []string, debug bool) (string, error) {
	var params []string
	for _, p := range fastBootParams() {
		if debug && p == "quiet" {
			continue
		}
		params = append(params, p)
	}
	for _, p := range extra {
		if p = strings.TrimSpace(p); p != "" {
			params = append(params, p)
		}
	}
	line := strings.Join(params, " ")
	if len(line) > maxCmdline {
		return "", fmt.Errorf("guest kernel command line is %d bytes, over the %d-byte limit: shorten hypervisor.kernel_params", len(line), maxCmdline)
	}
	return line, nil
}

func hasVirtiofs(shares []Share) bool {
	return slices.ContainsFunc(shares, func(s Share) bool { return s.Type == ShareVirtiofs })
}

// qemuConfig translates a VM description into govmm's configuration.
func qemuConfig(ctx context.Context, c *Config, l layout) (qemu.Config, error) {
	cmdline, err := kernelCmdline(c.KernelParams, c.Debug)
	if err != nil {
		return qemu.Config{}, err
	}
	q := qemu.Config{
		Path:    c.QEMUPath,
		Ctx:     ctx,
		Name:    "kata-" + c.ID,
		Machine: qemu.Machine{Type: c.MachineType, Acceleration: c.Accelerator},
		Kernel:  qemu.Kernel{Path: c.Kernel, InitrdPath: c.Initrd, Params: cmdline},
		SMP:     qemu.SMP{CPUs: uint32(c.VCPUs)},
		Bios:    c.Firmware,
		QMPSockets: []qemu.QMPSocket{
			{Type: qemu.Unix, Name: l.qmp, Server: true, NoWait: true},
		},
		Knobs: qemu.Knobs{
			NoUserConfig: true,
			NoDefaults:   true,
			NoGraphic:    true,
			NoReboot:     true,
			// -S: the guest waits until the process is placed (Config.Placed), and a
			// clone until its state is loaded.
			Stopped: c.Placed != nil || c.incoming != nil,
		},
	}
	if c.incoming != nil {
		// The state is loaded over QMP once the migration capabilities are set (template.go).
		q.Incoming = qemu.Incoming{MigrationType: qemu.MigrationDefer}
	}
	noRealtimeArg(&q.Knobs)
	// Under emulation the default CPU model (qemu64) boots faster than
	// "max" (measured: about 0.6 s less); "host" needs KVM.
	if c.Accelerator == AccelKVM {
		q.CPUModel = "host"
	}
	q.Devices = append(devices(c, l), blockDevices(c.Blocks)...)
	if opts := tcgOptions(c); opts != "" {
		// -accel and "-machine accel=" cannot be given together.
		q.Machine.Acceleration = ""
		q.Devices = append(q.Devices, rawArgs{"-accel", AccelTCG + opts})
	}
	mem := memoryLayout(c)
	switch {
	case c.memory != nil:
		q.Devices = append(q.Devices, fileMemoryArgs(mem, c.memory))
	case hasVirtiofs(c.Shares):
		// virtio-fs needs guest RAM that virtiofsd can map.
		setSharedMemory(&q, mem)
	default:
		q.Memory = mem
	}
	return q, nil
}

// tcgOptions are the emulator's options beyond QEMU's defaults ("" for none, and under KVM):
//   - one host thread for all vCPUs of a guest that has more than one. With multi-threaded TCG
//     (QEMU 7.2, Debian 12), a 2-vCPU guest on a loaded host locked up for good about once in a
//     dozen container creates: both vCPUs in soft lockup, one in the agent's mkdir of the
//     container's cgroup, the other at a jump label site (kmem_cache_alloc), as when the kernel
//     patches its own code while another vCPU runs it; the create then timed out. With one
//     thread, 60 creates in a row under the same load passed.
//   - a bounded translation buffer for a template or a clone (Config.TCGTranslationMiB).
func tcgOptions(c *Config) string {
	if c.Accelerator != AccelTCG {
		return ""
	}
	var opts string
	if c.VCPUs > 1 {
		opts += ",thread=single"
	}
	if c.memory != nil && c.TCGTranslationMiB > 0 {
		opts += ",tb-size=" + strconv.Itoa(c.TCGTranslationMiB)
	}
	return opts
}

// devices lists the VM's devices: the serial console, the agent channel,
// the hot-plug slots for NICs and the shares.
func devices(c *Config, l layout) []qemu.Device {
	devs := []qemu.Device{
		// ttyS0, on a socket the shim drains into console.log, capped
		// (console.go), so a failed boot can be diagnosed and a flooding
		// guest cannot fill the host.
		qemu.CharDevice{Driver: "isa-serial", Backend: qemu.Socket, ID: "console0", DeviceID: "serial0", Path: l.consoleSock},
		qemu.SerialDevice{Driver: qemu.VirtioSerial, ID: "vserial0"},
		// govmm emits "server=on,wait=off" for socket chardevs: QEMU
		// listens and the guest's writes wait until the shim connects.
		qemu.CharDevice{
			Driver: qemu.VirtioSerialPort, Backend: qemu.Socket, Bus: "vserial0.0",
			ID: "agentchr0", DeviceID: "agent0", Path: l.agent, Name: agentproto.AgentPortName,
		},
	}
	// Empty PCIe root ports for NICs hot-plugged later (hotplug.go).
	devs = append(devs, rootPorts(c.MachineType)...)
	for i, s := range c.Shares {
		switch s.Type {
		case Share9P:
			devs = append(devs, qemu.FSDevice{
				Driver: qemu.Virtio9P, FSDriver: qemu.Local, ID: "fs" + strconv.Itoa(i),
				// security_model=none: the guest's owners and modes
				// are the host's, as under runc, done with QEMU's
				// CHOWN/FOWNER/FSETID/MKNOD (confine.go) and
				// failures of those ignored. passthrough does the
				// same operations and only reports their failures;
				// the mapped models keep owners in xattrs, so files
				// Docker and the host share would disagree on them.
				Path: s.HostPath, MountTag: s.Tag, SecurityModel: qemu.None,
				// Container rootfs spans overlay and bind mounts:
				// remap keeps inode numbers unique across devices.
				Multidev: qemu.Remap,
			})
		case ShareVirtiofs:
			devs = append(devs, qemu.VhostUserDevice{
				SocketPath: l.vfsSocket(i), CharDevID: "vfschr" + strconv.Itoa(i),
				Tag: s.Tag, VhostUserType: qemu.VhostUserFS,
			})
		}
	}
	return devs
}
