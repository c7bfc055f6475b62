// Package sandbox is one container's virtual machine: it shares the container's rootfs and bind
// mounts with a QEMU guest, boots it in the container's network namespace, connects to the guest
// agent and hands it the container. It knows nothing of containerd; runtime/shim drives it.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/hostcgroup"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
	"github.com/kata-deploy/kata-deploy/runtime/network"
)

// Options describe the container to run.
type Options struct {
	ID     string
	Spec   *specs.Spec
	Config *config.Config
	// Logf receives warnings worth a line in the shim's log (e.g. the TCG fallback).
	Logf func(format string, args ...any)
	// RefillPool, if set, starts refilling the pool of clones in the background (FillPool). It
	// is called through Sandbox.RefillPool when the container took a clone from the pool or found
	// none ([factory] pool).
	RefillPool func()
	// DirectVolumeRoot is where direct-assigned volume records are looked up; "" means
	// upstream Kata's directvolume.Root.
	DirectVolumeRoot string
}

// Sandbox is a running VM with the container created in it (not started).
type Sandbox struct {
	ID       string
	StateDir string
	VM       *hypervisor.VM
	Agent    *agentproto.Client
	// BootTime is how long it took from launching QEMU until the agent answered.
	BootTime    time.Duration
	Accelerator string
	shared      *sharedDir
	direct      *directVolumes      // disks attached in place of shared bind mounts (directvol.go)
	cgroup      *hostcgroup.Manager // QEMU's and virtiofsd's host cgroup
	memoryMiB   int                 // the VM's RAM
	limits      *limits             // the container's resources as last applied (update.go)
	slot        string              // the pool slot its VM came from (pool.go); "" for a VM of its own
	refill      func()              // Options.RefillPool when the pool was asked for a clone
	spareNIC    *network.SpareNIC   // the pooled VM's spare card, for the first network link
	placing     <-chan error        // a pooled QEMU's move into the host cgroup (adoptSlot)
	placeOnce   sync.Once
	placeErr    error
	refillOnce  sync.Once
	down        teardownState // Release's and Destroy's progress
}

// validID is what containerd and Docker use as container IDs; anything else could escape the
// state directory once it becomes a path.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Names in a sandbox's state directory: the share root, and outside it the list of the binds the
// shim made under it (the guest can write the share root, not the list).
const (
	sharedDirName    = "shared"
	sharedRecordName = "shared.list"
)

// StateDir is the directory holding a sandbox's sockets, logs and shared mounts.
func StateDir(cfg *config.Config, id string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("invalid container id %q: want letters, digits, '_', '.', '-' (at most 64)", id)
	}
	return filepath.Join(cfg.Runtime.StateDir, id), nil
}

// Create boots the VM and creates the container in it. On error nothing is left behind.
func Create(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// Refused before anything starts: QEMU would otherwise boot in the other container's namespace.
	if err := refuseJoinedNetNS(opts.Spec); err != nil {
		return nil, err
	}
	netnsPath, err := networkNamespace(opts.Spec)
	if err != nil {
		return nil, err
	}
	devs, guestDevices, err := planDevices(opts.Spec)
	if err != nil {
		return nil, err
	}
	// A profile the runtime cannot apply fails the create before anything starts.
	seccomp, err := compileSeccomp(opts.Spec)
	if err != nil {
		return nil, err
	}
	if devs.dropped > 0 {
		logf("privileged container: %d host devices of its spec stay on the host (the VM has its own)", devs.dropped)
	}
	stateDir, err := StateDir(opts.Config, opts.ID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the sandbox state directory: %w", err)
	}
	s := &Sandbox{ID: opts.ID, StateDir: stateDir}
	defer func() {
		if err != nil {
			s.Destroy(context.WithoutCancel(ctx))
		}
	}()
	dvRoot := opts.DirectVolumeRoot
	if dvRoot == "" {
		dvRoot = directvolume.Root
	}
	vols, err := findDirectVolumes(dvRoot, opts.Spec)
	if err != nil {
		return nil, err
	}
	if s.direct, err = attachDirectVolumes(dvRoot, opts.Config.Runtime.StateDir, opts.ID, vols); err != nil {
		return nil, err
	}
	var guestSpec *specs.Spec
	if s.shared, guestSpec, err = shareExcept(filepath.Join(stateDir, sharedDirName), filepath.Join(stateDir, sharedRecordName), opts.Spec, guestSources(vols)); err != nil {
		return nil, err
	}
	guestSpec = containerinit.WithoutSeccomp(guestWithDevices(guestSpec, guestDevices))
	accel, err := accelerator(opts.Config.Hypervisor.Accelerator, logf)
	if err != nil {
		return nil, err
	}
	s.Accelerator = accel
	vc := vmConfig(opts, stateDir, accel, netnsPath)
	if s.cgroup, err = hostCgroup(opts, stateDir, vc.MemoryMiB); err != nil {
		return nil, err
	}
	vc.Placed, s.memoryMiB = s.cgroup.Add, vc.MemoryMiB
	vc.Blocks = append(s.direct.blocks(), devs.blocks...)
	s.limits = newLimits(opts.Spec, opts.Config.Hypervisor.MemoryOverheadMiB)
	started := time.Now()
	if err := s.startVM(ctx, opts, vc, netnsPath, logf); err != nil {
		return nil, err
	}
	s.BootTime = time.Since(started)
	share := guestShare(vc)
	if s.slot != "" {
		share = poolShare(vc) // mounted while the clone waited, the container's part below
	}
	req := agentproto.CreateContainerRequest{
		ID:      opts.ID,
		Spec:    guestSpec,
		Shares:  append([]agentproto.Share{share}, s.direct.shares()...),
		Devices: devs.devs,
		Seccomp: seccomp,
	}
	if err := s.Agent.CreateContainer(ctx, req); err != nil {
		logUnexplained(s.VM, err, logf)
		return nil, fmt.Errorf("creating the container in the VM: %w", err)
	}
	return s, nil
}

// logUnexplained logs the end of the guest's console when the agent did not explain a failed
// request itself (no answer in time, a broken session): the kernel's own account of a stuck
// guest (hung tasks, RCU stalls, an oops) is there, and the console goes with the VM.
func logUnexplained(vm *hypervisor.VM, err error, logf func(string, ...any)) {
	var remote *agentproto.RemoteError
	if vm == nil || errors.As(err, &remote) {
		return
	}
	if tail := strings.TrimSpace(vm.Console()); tail != "" {
		logf("the guest did not answer (%v); its console ends with:\n%s", err, tail)
	}
}

func vmConfig(opts Options, stateDir, accel, netnsPath string) hypervisor.Config {
	h := opts.Config.Hypervisor
	fsType := guestFSType(h.SharedFS)
	memoryMiB, vcpus := vmSize(h, opts.Spec, hostCPUs())
	return hypervisor.Config{
		ID:             opts.ID,
		QEMUPath:       h.Path,
		Kernel:         h.Kernel,
		Initrd:         h.Initrd,
		Firmware:       h.Firmware,
		MachineType:    h.MachineType,
		Accelerator:    accel,
		KernelParams:   kernelParams(opts.Config),
		VCPUs:          vcpus,
		MemoryMiB:      memoryMiB,
		MaxMemoryMiB:   maxMemoryMiB(memoryMiB),
		StateDir:       filepath.Join(stateDir, "vm"),
		CacheDir:       runtimecache.Dir(opts.Config.Runtime.StateDir), // beside the state directory, which holds containers only
		Shares:         []hypervisor.Share{{Tag: agentproto.SharedTag, HostPath: filepath.Join(stateDir, sharedDirName), Type: fsType}},
		VirtiofsDaemon: h.VirtiofsDaemon,
		// Templated VMs only (hypervisor.Config.TCGTranslationMiB).
		TCGTranslationMiB: h.TCGTranslationMiB,
		NetNSPath:         netnsPath,
		Debug:             opts.Config.Runtime.Debug,
	}
}

// guestShare is how the guest mounts the VM's share (vmConfig's): the container's files at
// agentproto.SharedGuestDir.
func guestShare(vc hypervisor.Config) agentproto.Share {
	return agentproto.Share{Type: vc.Shares[0].Type, Tag: vc.Shares[0].Tag, GuestPath: agentproto.SharedGuestDir}
}

func kernelParams(cfg *config.Config) []string {
	var params []string
	if cfg.Hypervisor.KernelParams != "" {
		params = append(params, cfg.Hypervisor.KernelParams)
	}
	if cfg.Agent.Debug {
		params = append(params, agentproto.DebugParam+"=1")
	}
	return append(params, guestCgroupParam(), preloadParam(cfg))
}

// preloadParam names the module groups every VM needs soon: its shared file system's, at the
// container's create, and the network's, at its start (a NIC may also come later, by hot-plug).
// The agent loads them while the host sets up; disks' modules wait for a disk.
func preloadParam(cfg *config.Config) string {
	groups := append(agentproto.ShareModuleGroups(guestFSType(cfg.Hypervisor.SharedFS)), agentproto.ModuleGroupNet)
	return agentproto.ModulesParam + "=" + strings.Join(groups, ",")
}

func guestFSType(sharedFS string) string {
	if sharedFS == "virtio-fs" {
		return "virtiofs"
	}
	return "9p"
}

// networkNamespace returns the netns path QEMU must join ("" = a new one). A container without a
// network namespace would share the host's network stack, which a VM cannot do.
func networkNamespace(spec *specs.Spec) (string, error) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return ns.Path, nil
			}
		}
	}
	return "", errors.New("the container asks for the host's network (--network host), which a VM cannot share: use the default bridge, a user-defined network or --network none")
}

// accelerator resolves "auto" to kvm when KVM really works here, else tcg with a warning.
func accelerator(requested string, logf func(string, ...any)) (string, error) {
	if requested == "tcg" {
		return "tcg", nil
	}
	name, why := accel.Accelerator(accel.ProbeHost())
	if requested == "kvm" && name != "kvm" {
		return "", fmt.Errorf("accelerator = \"kvm\" in the configuration, but KVM is not usable here: %s; set accelerator = \"auto\" or \"tcg\"", why)
	}
	if name != "kvm" {
		logf("WARNING: running the VM under emulation (TCG), about 10x slower than KVM: %s", why)
	}
	return name, nil
}

// connectAgent dials the agent's virtio-serial socket and waits until the agent has answered the
// session's handshake, the VM dies, or the boot timeout passes. The handshake is the agent's
// answer: no request round trip follows it (a cold guest runs each new code path slowly), the
// caller's first request goes out at once.
func connectAgent(ctx context.Context, vm *hypervisor.VM, timeout time.Duration, logf func(string, ...any)) (*agentproto.Client, error) {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", vm.AgentSocket)
	if err != nil {
		return nil, fmt.Errorf("connecting to the agent socket %s: %w", vm.AgentSocket, err)
	}
	client, err := agentproto.NewClient(conn, agentproto.WithLogf(logf))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting the agent session: %w", err)
	}
	// A VM that exits ends the wait at once (its socket may stay open until QEMU is reaped).
	wait, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-vm.Done():
			stop()
		case <-wait.Done():
		}
	}()
	err = client.Ready(wait)
	if err == nil {
		return client, nil
	}
	client.Close()
	if ctx.Err() == nil {
		// The channel closed: QEMU closes it as it exits, and is reaped a moment later.
		select {
		case <-vm.Done():
		case <-time.After(time.Second):
		}
	}
	select {
	case <-vm.Done():
		return nil, fmt.Errorf("the VM exited during boot (see %s): %w", filepath.Join(vm.StateDir, "console.log"), err)
	default:
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("the guest agent did not answer within %s (see %s): %w", timeout, filepath.Join(vm.StateDir, "console.log"), err)
	}
	return nil, fmt.Errorf("the guest agent's session failed (see %s): %w", filepath.Join(vm.StateDir, "console.log"), err)
}

// Destroy powers the VM off and removes everything the sandbox created on the host, and returns
// once all of it is gone. It is safe to call more than once and on a partly created sandbox.
// The Agent and VM fields stay set afterwards: calls through them fail cleanly (closed session, dead
// process) instead of racing with a nil pointer.
func (s *Sandbox) Destroy(ctx context.Context) error {
	err := s.Release(ctx)
	<-s.down.done
	return errors.Join(err, s.down.restErr)
}

// Release powers the VM off and releases what the removal of the container waits for: the guest
// has written out its file systems, QEMU is stopped or killed, and no mount of the container's
// files is left on the host. When QEMU was killed, what remains (its exit, the VM's state
// directory and pool slot, the cgroup, the pool's refill) goes on in the background, as it no
// longer touches the container's files: a container's removal does not wait for QEMU to unmap its
// memory. Destroy waits for it. Safe to call more than once.
func (s *Sandbox) Release(ctx context.Context) error {
	t := &s.down
	t.once.Do(func() {
		t.done = make(chan struct{})
		t.err = s.release(ctx, t)
	})
	return t.err
}

// teardownState is the progress of a sandbox's teardown (Release, Destroy). done and restErr are
// set in Release's once, and read after it.
type teardownState struct {
	once    sync.Once
	err     error         // Release's
	done    chan struct{} // closed once the rest is done
	restErr error         // the rest's, set before done is closed
}

func (s *Sandbox) release(ctx context.Context, t *teardownState) error {
	s.awaitPlaced() // QEMU is not moved into a cgroup while it is torn down
	synced := s.shutdownGuest(ctx)
	// A synced guest without disks leaves nothing in QEMU worth writing out: it is killed, and
	// its exit is waited for with the rest.
	killed := synced && s.VM != nil && !s.VM.HasDisks() && s.VM.Kill() == nil
	var errs []error
	if s.VM != nil && !killed {
		if err := s.VM.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the VM: %w", err))
		}
	}
	if err := s.unbindFromSlot(); err != nil {
		errs = append(errs, err)
	}
	if s.shared != nil {
		if err := s.shared.unshare(); err != nil {
			errs = append(errs, err)
		}
	}
	rest := func() {
		defer close(t.done)
		t.restErr = s.removeRest(ctx, killed)
	}
	if killed {
		go rest()
	} else {
		rest()
	}
	return errors.Join(errs...)
}

// awaitPlaced waits until a pooled QEMU is in the container's host cgroup (adoptSlot).
func (s *Sandbox) awaitPlaced() error {
	s.placeOnce.Do(func() {
		if s.placing != nil {
			if err := <-s.placing; err != nil {
				s.placeErr = fmt.Errorf("placing QEMU (pid %d) in the container's cgroup: %w", s.VM.PID, err)
			}
		}
	})
	return s.placeErr
}

// shutdownGuest asks the agent to unmount the shares and sync, and reports whether it did. A
// guest without disks that synced when the container's init exited (agentproto.Response.Synced)
// is not asked: nothing of the container's is left to write, and its shares need no unmounting in
// a VM about to be killed.
func (s *Sandbox) shutdownGuest(ctx context.Context) bool {
	if s.Agent == nil {
		return false
	}
	defer s.Agent.Close()
	if s.Agent.Synced() && s.VM != nil && !s.VM.HasDisks() {
		return true
	}
	// A guest that stopped answering is not asked: QEMU is stopped from the host.
	if s.Agent.Unresponsive() != nil {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.Agent.Shutdown(sctx) == nil // the VM may already be gone
}

// removeRest removes what Release left once QEMU is stopped or killed: QEMU's exit is waited for,
// then the VM's state directory, the pool slot, the sandbox's state directory and cgroup go, the
// pool is refilled and the direct volumes are released.
func (s *Sandbox) removeRest(ctx context.Context, killed bool) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if s.VM != nil && killed {
		if err := s.VM.StopSynced(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the VM: %w", err))
		}
	}
	if err := s.releaseSlot(); err != nil {
		errs = append(errs, fmt.Errorf("removing the VM's pool slot: %w", err))
	}
	if err := cleanupRetrying(s.StateDir); err != nil {
		errs = append(errs, err)
	}
	s.RefillPool() // a container that never started did not refill the pool
	// Once QEMU is gone: the image is no longer open.
	if err := s.direct.release(); err != nil {
		errs = append(errs, fmt.Errorf("releasing the direct volumes: %w", err))
	}
	return errors.Join(errs...)
}

// cleanupRetrying is Cleanup, tried again for about a second while it fails: right after QEMU and
// virtiofsd exited, the kernel may still count them in the host cgroup (until they are reaped),
// and the cgroup cannot be removed yet.
func cleanupRetrying(stateDir string) error {
	err := Cleanup(stateDir)
	for delay := 10 * time.Millisecond; err != nil && delay <= 640*time.Millisecond; delay *= 2 {
		time.Sleep(delay)
		err = Cleanup(stateDir)
	}
	return err
}

// Cleanup removes what a sandbox left in stateDir after its shim died: the QEMU process, the
// shared mounts, the host cgroup and the directory itself. Idempotent.
func Cleanup(stateDir string) error {
	if stateDir == "" {
		return nil
	}
	slotErr := cleanupSlotRecord(stateDir)
	errs := []error{
		hypervisor.Cleanup(filepath.Join(stateDir, "vm")),
		slotErr,
		cleanupShare(filepath.Join(stateDir, sharedDirName), filepath.Join(stateDir, sharedRecordName)),
	}
	if slotErr != nil {
		// The record names the pooled VM to stop: kept for the next attempt.
		return errors.Join(errs...)
	}
	// Once QEMU and virtiofsd are gone. A cgroup that cannot be removed yet keeps its record
	// (and so the directory) for the next attempt.
	if err := hostcgroup.Cleanup(filepath.Join(stateDir, cgroupRecord)); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := removeShallow(stateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
