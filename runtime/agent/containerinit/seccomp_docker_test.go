package containerinit

import (
	"fmt"
	"testing"

	"github.com/docker/docker/oci/caps"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCompileDockerProfile compiles Docker's default profile (default capabilities, and with
// the capabilities that open more syscalls) and checks the program against wantAction for every
// syscall number below 1100 of each ABI, and beyond, with argument values its conditional rules
// test. It also bounds the program's size: it travels to the guest with each container and is
// checked and loaded at each container's start and exec.
func TestCompileDockerProfile(t *testing.T) {
	// Docker's default capabilities, and more (--cap-add): Docker's default profile allows more
	// syscalls to a container that has them.
	dockerCaps := caps.DefaultCapabilities()
	more := append([]string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_MODULE",
		"CAP_SYS_BOOT", "CAP_SYSLOG", "CAP_SYS_TIME", "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_RAWIO",
		"CAP_SYS_TTY_CONFIG", "CAP_DAC_READ_SEARCH"}, dockerCaps...)
	// Values Docker's conditional rules compare (clone's namespace flags, personality's
	// domains, socket's AF_VSOCK), above and below them, and with high words set.
	argValues := []uint64{0, 1, 2, 8, 40, 0x20000, 0x20008, 0xffffffff, 0x10000000, 0x7e020000,
		0x7e020000 | 1<<32, 1 << 32, 0x80000000, ^uint64(0)}
	tests := []struct {
		name    string
		caps    []string
		maxInsn int
	}{
		{"default capabilities", dockerCaps, 800},
		{"more capabilities", more, 800},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			profile, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{
				Capabilities: &specs.LinuxCapabilities{Bounding: tt.caps}}})
			if err != nil {
				t.Fatal(err)
			}
			f, err := compileSeccomp(profile)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.prog) > tt.maxInsn {
				t.Errorf("%d instructions, want at most %d", len(f.prog), tt.maxInsn)
			}
			checked := 0
			for _, arch := range []uint32{auditArchX86_64, auditArchI386, 0xc00000b7} {
				var nrs []uint32
				for nr := uint32(0); nr < 1100; nr++ {
					nrs = append(nrs, nr, nr|x32SyscallBit)
				}
				nrs = append(nrs, 0x3fffffff, 0x7fffffff, 0xffffffff)
				for _, nr := range nrs {
					for _, v := range argValues {
						args := []uint64{v, v, v, v, v, v}
						want := wantAction(t, profile, arch, nr, args)
						if got := runBPF(t, f.prog, seccompData(arch, nr, args...)); got != want {
							t.Fatalf("arch %#x syscall %#x args %#x: program returns %#x, the profile says %#x", arch, nr, v, got, want)
						}
						checked++
					}
				}
			}
			t.Logf("%d instructions, %d syscalls checked", len(f.prog), checked)
		})
	}
}

// wantAction is what the profile decides for one syscall, read from the profile directly as the
// compiler's comment states the semantics (libseccomp's as runc uses it), without BPF.
func wantAction(t *testing.T, s *specs.LinuxSeccomp, arch, nr uint32, args []uint64) uint32 {
	t.Helper()
	act := func(a specs.LinuxSeccompAction, errno *uint) uint32 {
		v, err := seccompActionValue(a, errno)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	listed := map[seccompABI]bool{}
	for _, a := range s.Architectures {
		switch a {
		case specs.ArchX86_64:
			listed[abiX86_64] = true
		case specs.ArchX32:
			listed[abiX32] = true
		case specs.ArchX86:
			listed[abiX86] = true
		}
	}
	var abi seccompABI
	switch {
	case arch == auditArchX86_64 && nr&x32SyscallBit == 0:
		abi = abiX86_64
	case arch == auditArchX86_64 && listed[abiX32]:
		abi = abiX32
	case arch == auditArchI386 && listed[abiX86]:
		abi = abiX86
	default:
		return retKillThread // an architecture the profile does not cover
	}
	def := act(s.DefaultAction, s.DefaultErrnoRet)
	var conditional []specs.LinuxSyscall
	var unconditional *specs.LinuxSyscall
	maxNr, named := uint32(0), false
	for i, sc := range s.Syscalls {
		for _, name := range sc.Names {
			n, ok := abi.syscallNumber(name)
			if !ok {
				continue
			}
			maxNr, named = max(maxNr, n), true
			switch {
			case n != nr:
			case len(sc.Args) > 0:
				conditional = append(conditional, sc)
			case unconditional == nil:
				unconditional = &s.Syscalls[i]
			}
		}
	}
	for _, sc := range conditional {
		if argsMatch(sc.Args, args, abi == abiX86_64) {
			return act(sc.Action, sc.ErrnoRet)
		}
	}
	switch {
	case unconditional != nil:
		return act(unconditional.Action, unconditional.ErrnoRet)
	case listed[abi] && named && nr > maxNr && def != retAllow && def != retLog && def != retErrno|uint32(unix.ENOSYS):
		return retErrno | uint32(unix.ENOSYS) // runc's enosys stub
	}
	return def
}

// argsMatch: the conditions of a rule all hold, or when two test the same argument, any one does.
func argsMatch(conds []specs.LinuxSeccompArg, args []uint64, wide bool) bool {
	seen, shared := map[uint]bool{}, false
	for _, c := range conds {
		shared = shared || seen[c.Index]
		seen[c.Index] = true
	}
	for _, c := range conds {
		if holds(c, args[c.Index], wide) == shared {
			return shared
		}
	}
	return !shared
}

func holds(c specs.LinuxSeccompArg, arg uint64, wide bool) bool {
	v, v2 := c.Value, c.ValueTwo
	if !wide { // 32-bit ABIs compare 32-bit values
		arg, v, v2 = uint64(uint32(arg)), uint64(uint32(v)), uint64(uint32(v2))
	}
	switch c.Op {
	case specs.OpEqualTo:
		return arg == v
	case specs.OpNotEqual:
		return arg != v
	case specs.OpGreaterThan:
		return arg > v
	case specs.OpGreaterEqual:
		return arg >= v
	case specs.OpLessThan:
		return arg < v
	case specs.OpLessEqual:
		return arg <= v
	case specs.OpMaskedEqual:
		return arg&v == v2
	}
	panic(fmt.Sprintf("operator %q", c.Op))
}
