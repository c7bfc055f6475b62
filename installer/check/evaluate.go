package check

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/qemusandbox"
)

// Facts is everything Gather found on the host. Errors are kept as text so that a Facts value can
// be written by hand in tests.
type Facts struct {
	Distro        hostinfo.Distro
	DistroErr     string
	KernelRelease string
	CgroupVersion int
	Root          bool

	CPU     accel.CPU
	CPUErr  string
	KVM     accel.KVM
	Devices []hostinfo.Device

	QEMU    hostinfo.QEMU
	QEMUErr string

	Docker   Docker
	Existing []hostinfo.Install
	// Plugin is the volume driver's socket, NetworkPlugin the network driver's.
	Plugin        Plugin
	NetworkPlugin Plugin
}

// Evaluate turns facts into the report. It is pure: the same facts give the same report.
func Evaluate(f Facts) Report {
	accel, why := accel.Accelerator(f.KVM)
	r := Report{
		SchemaVersion:     SchemaVersion,
		Accelerator:       accel,
		AcceleratorReason: why,
		Docker:            f.Docker,
		QEMUSandbox:       qemuSandbox(f),
		VirtiofsdSandbox:  virtiofsdSandbox(f),
		Sections: []Section{
			{Name: "Host", Lines: hostLines(f)},
			{Name: "Virtualization", Lines: virtualizationLines(f, accel, why)},
			{Name: "Devices", Lines: deviceLines(f)},
			{Name: "Hypervisor", Lines: hypervisorLines(f)},
			{Name: "Docker", Lines: dockerLines(f.Docker)},
			{Name: "Existing installs", Lines: existingLines(f.Existing)},
			{Name: "Plugins", Lines: pluginLines(f)},
		},
	}
	r.CanRunVMContainers = r.Worst() != Fail
	return r
}

func hostLines(f Facts) []Line {
	distro := Line{ID: "host.distro", Name: "Distribution", Status: OK}
	switch {
	case f.DistroErr != "":
		distro.Status, distro.Value = Warn, "unknown ("+f.DistroErr+")"
		distro.Remedy = "kata-deploy reads /etc/os-release to pick the package manager; use --kernel FILE to install without one"
	default:
		distro.Value = fmt.Sprintf("%s (id %s, version %s, package manager %s)",
			orDash(f.Distro.PrettyName), orDash(f.Distro.ID), orDash(f.Distro.VersionID), orDash(f.Distro.PackageManager))
		if f.Distro.PackageManager == "" {
			distro.Status = Warn
			distro.Remedy = "no supported package manager (apt, dnf, zypper) to fetch a guest kernel: pass --kernel FILE to install"
		}
	}
	cgroup := Line{ID: "host.cgroup", Name: "cgroup version", Status: OK, Value: "v" + strconv.Itoa(f.CgroupVersion)}
	if f.CgroupVersion == 0 {
		cgroup.Status, cgroup.Value, cgroup.Remedy = Warn, "unknown", "mount the cgroup hierarchy at /sys/fs/cgroup"
	}
	root := Line{ID: "host.root", Name: "Running as root", Status: OK, Value: "yes"}
	if !f.Root {
		root.Status, root.Value = Warn, "no"
		root.Remedy = "run with sudo: the KVM probe, Docker's daemon.json and the install need root"
	}
	return []Line{distro, {ID: "host.kernel", Name: "Kernel", Status: OK, Value: f.KernelRelease}, cgroup, root}
}

func virtualizationLines(f Facts, accel, why string) []Line {
	cpu := Line{ID: "virtualization.cpu", Name: "CPU", Status: OK}
	switch {
	case f.CPUErr != "":
		cpu.Status, cpu.Value = Warn, "unknown ("+f.CPUErr+")"
	case f.CPU.VMX || f.CPU.SVM:
		cpu.Value = fmt.Sprintf("%s, %s", orDash(f.CPU.Vendor), cpuFlags(f.CPU))
	default:
		cpu.Status = Warn
		cpu.Value = fmt.Sprintf("%s, %s", orDash(f.CPU.Vendor), cpuFlags(f.CPU))
		cpu.Remedy = "no vmx/svm: enable VT-x/AMD-V in the firmware, or nested virtualization on the hypervisor, for KVM speed"
	}
	dev := Line{ID: "virtualization.kvm-device", Name: "/dev/kvm", Status: OK, Value: "present"}
	if !f.KVM.DevicePresent {
		dev.Status, dev.Value = Warn, "absent"
		dev.Remedy = "load the KVM module (modprobe kvm_intel or kvm_amd) if the CPU supports it"
	}
	kvm := Line{ID: "virtualization.kvm", Name: "KVM usable", Status: OK, Value: "yes"}
	if f.KVM.APIVersion > 0 {
		kvm.Value += fmt.Sprintf(" (API version %d)", f.KVM.APIVersion)
	}
	if !f.KVM.Usable {
		kvm.Status, kvm.Value, kvm.Remedy = Warn, "no: "+f.KVM.Reason, "VMs will run under emulation (TCG), about 10x slower"
	}
	acc := Line{ID: "virtualization.accelerator", Name: "Accelerator", Status: OK, Value: accel + ": " + why}
	if accel != "kvm" {
		acc.Status = Warn
		acc.Remedy = "containers work, but boot and run slower; use a host with usable KVM for production"
	}
	return []Line{cpu, dev, kvm, acc}
}

func cpuFlags(c accel.CPU) string {
	var flags []string
	if c.VMX {
		flags = append(flags, "vmx")
	}
	if c.SVM {
		flags = append(flags, "svm")
	}
	if c.Hypervisor {
		flags = append(flags, "hypervisor")
	}
	if len(flags) == 0 {
		return "no virtualization flags"
	}
	return "flags " + strings.Join(flags, ",")
}

func deviceLines(f Facts) []Line {
	var lines []Line
	for _, d := range f.Devices {
		l := Line{ID: "devices." + strings.TrimPrefix(strings.ReplaceAll(d.Path, "/dev/net/", "/dev/"), "/dev/"), Name: d.Path, Status: OK, Value: "present"}
		if !d.Present || !d.CharDevice {
			l.Value = "absent"
			switch d.Path {
			case "/dev/net/tun":
				l.Status, l.Remedy = Fail, "the VM's network card is a tap device: modprobe tun"
			case "/dev/vhost-net":
				l.Status, l.Remedy = Warn, "networking runs without vhost acceleration (slower): modprobe vhost_net"
			case "/dev/vhost-vsock":
				l.Value = "absent (the agent channel uses virtio-serial)"
			}
		}
		lines = append(lines, l)
	}
	return lines
}

func hypervisorLines(f Facts) []Line {
	q := Line{ID: "hypervisor.qemu", Name: "QEMU", Status: OK, Value: f.QEMU.Path + " " + f.QEMU.Version}
	if f.QEMUErr != "" || f.QEMU.Path == "" {
		q.Status, q.Value = Fail, "not found"
		q.Remedy = "install QEMU: " + qemuPackageHint(f.Distro.PackageManager)
	}
	qboot := Line{ID: "hypervisor.qboot", Name: "Fast-boot firmware (qboot)", Status: OK, Value: f.QEMU.QbootPath}
	if f.QEMU.QbootPath == "" {
		qboot.Status, qboot.Value = Warn, "not found"
		qboot.Remedy = "VMs boot through SeaBIOS, about 3x slower; Debian's qemu-system-x86 ships /usr/share/qemu/qboot.rom"
	}
	vfs := Line{ID: "hypervisor.virtiofsd", Name: "virtiofsd", Status: OK, Value: f.QEMU.VirtiofsdPath}
	if f.QEMU.VirtiofsdPath == "" {
		vfs.Value = "not found (the rootfs is shared over virtio-9p)"
	}
	lines := []Line{q, qboot, vfs}
	if q.Status != Fail {
		lines = append(lines, sandboxLine(f.QEMU.Sandbox))
	}
	if f.QEMU.VirtiofsdPath != "" {
		lines = append(lines, virtiofsdSandboxLine(f.QEMU.Virtiofsd))
	}
	return lines
}

func qemuSandbox(f Facts) *qemusandbox.Support {
	if f.QEMUErr != "" || f.QEMU.Path == "" {
		return nil
	}
	s := f.QEMU.Sandbox
	return &s
}

func virtiofsdSandbox(f Facts) *qemusandbox.Virtiofsd {
	if f.QEMU.VirtiofsdPath == "" {
		return nil
	}
	v := f.QEMU.Virtiofsd
	return &v
}

// sandboxLine reports the seccomp sandbox QEMU runs under: the runtime asks
// the same binary the same question and applies what it answers.
func sandboxLine(s qemusandbox.Support) Line {
	l := Line{ID: "hypervisor.sandbox", Name: "QEMU seccomp sandbox", Status: OK,
		Value: "-sandbox " + s.Arg()}
	switch {
	case !s.Enabled:
		l.Status, l.Value = Warn, "not available ("+s.Reason+"): QEMU runs without a seccomp filter"
		l.Remedy = "install a QEMU built with seccomp (Debian's qemu-system-x86 is); the runtime still confines its capabilities and namespaces"
	case !s.Complete():
		l.Status = Warn
		l.Value += " (missing " + strings.Join(s.Missing, ", ") + ": " + s.Reason + ")"
		l.Remedy = "upgrade QEMU: the missing options leave those system calls to a compromised QEMU"
	}
	return l
}

func virtiofsdSandboxLine(v qemusandbox.Virtiofsd) Line {
	l := Line{ID: "hypervisor.virtiofsd-sandbox", Name: "virtiofsd sandbox", Status: OK, Value: v.String()}
	if !v.Namespace || !v.Seccomp {
		l.Status = Warn
		l.Remedy = "upgrade virtiofsd (QEMU 6.0+ or the standalone virtiofsd), or keep shared_fs = \"virtio-9p\""
	}
	return l
}

func qemuPackageHint(pm string) string {
	switch pm {
	case "apt":
		return "apt-get install qemu-system-x86"
	case "dnf", "yum":
		return "dnf install qemu-kvm"
	case "zypper":
		return "zypper install qemu-x86"
	case "pacman":
		return "pacman -S qemu-base"
	case "apk":
		return "apk add qemu-system-x86_64"
	}
	return "install your distribution's qemu-system-x86_64 package"
}

// MinDockerMajor is the oldest Docker Engine that loads a shim v2 runtime given as runtimeType with
// options in daemon.json.
const MinDockerMajor = 24

func dockerLines(d Docker) []Line {
	daemon := Line{ID: "docker.daemon", Name: "Docker daemon", Status: OK, Value: "reachable at " + d.Host}
	if !d.Reachable {
		daemon.Status, daemon.Value = Fail, "not reachable at "+d.Host+": "+d.Error
		daemon.Remedy = "start Docker (systemctl start docker) or point DOCKER_HOST at the daemon"
		return []Line{daemon}
	}
	if d.PID > 0 {
		daemon.Value += fmt.Sprintf(" (dockerd pid %d)", d.PID)
	}
	version := Line{ID: "docker.version", Name: "Docker version", Status: OK,
		Value: fmt.Sprintf("%s (API %s)", d.Version, d.APIVersion)}
	if !d.ShimV2Runtimes {
		version.Status = Fail
		version.Remedy = fmt.Sprintf("Docker %s cannot register a shim v2 runtime (runtimeType with options needs Docker Engine %d.0 or newer; 20.10 cannot load shim v2 runtimes at all): upgrade Docker Engine to %d or newer", d.Version, MinDockerMajor, MinDockerMajor)
	}
	cfg := Line{ID: "docker.config-file", Name: "daemon.json", Status: OK, Value: d.ConfigFile}
	switch {
	case d.ConfigFile == "":
		cfg.Status, cfg.Value = Warn, "unknown"
		cfg.Remedy = "run as root on the Docker host so kata-deploy can find the daemon's --config-file; or pass --config-file to install"
	case d.ConfigReadOnly:
		cfg.Status = Warn
		cfg.Value += " (" + d.ConfigFileSource + ", read-only)"
		cfg.Remedy = "kata-deploy cannot write this file: install prints the runtimes stanza to add by hand"
	default:
		cfg.Value += " (" + d.ConfigFileSource + ")"
	}
	return []Line{daemon, version, cfg,
		{ID: "docker.runtimes", Name: "Registered runtimes", Status: OK, Value: strings.Join(d.Runtimes, ", ")},
		{ID: "docker.default-runtime", Name: "Default runtime", Status: OK, Value: d.DefaultRuntime},
		{ID: "docker.cgroup-driver", Name: "cgroup driver", Status: OK, Value: d.CgroupDriver + " (cgroup " + d.CgroupVersion + ")"},
	}
}

// ShimV2Supported reports whether a Docker Engine version string (e.g. "29.0.1", "24.0.0-rc.1",
// "20.10.24") can load a shim v2 runtime with runtimeType and options.
func ShimV2Supported(version string) bool {
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= MinDockerMajor
}

func existingLines(installs []hostinfo.Install) []Line {
	upstream := Line{ID: "existing.upstream-kata", Name: "Upstream Kata Containers", Status: OK, Value: "none"}
	ours := Line{ID: "existing.kata-deploy", Name: "kata-deploy install", Status: OK, Value: "none"}
	for _, in := range installs {
		desc := in.Path
		if in.Version != "" {
			desc += " (version " + in.Version + ")"
		}
		switch in.Kind {
		case "upstream-kata":
			upstream.Status, upstream.Value = Warn, desc
			upstream.Remedy = "kata-deploy installs beside it and never changes it; pass --from to register that runtime instead"
		case "kata-deploy":
			ours.Value = desc
		}
	}
	return []Line{upstream, ours}
}

// pluginLines report kata-deploy's plugins: the kata-block volume driver and the kata-net network
// driver. They are optional: never a failure, a warning only when a socket is there but nothing
// serves it, or Docker has objects of a driver that is not running (Docker then fails every use of
// them).
func pluginLines(f Facts) []Line {
	return []Line{
		driverLine("plugins.volume", "volume", "volume(s)", f.Plugin, f.Docker.Reachable, f.Docker.BlockVolumes),
		driverLine("plugins.network", "network", "network(s)", f.NetworkPlugin, f.Docker.Reachable, f.Docker.NetNetworks),
	}
}

// driverLine reports one driver; count is how many objects Docker has of it (-1: not known).
func driverLine(id, kind, objects string, p Plugin, dockerUp bool, count int) Line {
	l := Line{ID: id, Name: p.Name + " " + kind + " plugin", Status: OK}
	held := ""
	if dockerUp && count >= 0 {
		held = fmt.Sprintf("; Docker has %d %s of it", count, objects)
	}
	switch {
	case p.Reachable:
		l.Value = "serving " + p.Socket + held
	case p.Present:
		l.Status, l.Value = Warn, "socket "+p.Socket+" is there but nothing serves it"+held
		l.Remedy = "start the plugin: systemctl start kata-plugins, or kata-deploy install --with-plugins"
	default:
		l.Value = "not installed (kata-deploy install --with-plugins adds it)" + held
		if dockerUp && count > 0 {
			l.Status, l.Remedy = Warn, "Docker has "+objects+" of a driver that is not running: kata-deploy install --with-plugins"
		}
	}
	return l
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
