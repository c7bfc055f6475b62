package containerinit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// runBPF interprets the subset of classic BPF the compiler emits over a
// struct seccomp_data, as the kernel would on little-endian x86.
func runBPF(t *testing.T, prog []unix.SockFilter, data []byte) uint32 {
	t.Helper()
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if int(in.K)+4 > len(data) {
				t.Fatalf("pc %d: load beyond seccomp_data at %d", pc, in.K)
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var cond bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				cond = acc == in.K
			case unix.BPF_JGT:
				cond = acc > in.K
			case unix.BPF_JGE:
				cond = acc >= in.K
			}
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected instruction %#x", pc, in.Code)
		}
	}
	t.Fatalf("program falls off its end")
	return 0
}

func seccompData(arch, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[offNr:], nr)
	binary.LittleEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(b[offArgs+8*i:], a)
	}
	return b
}

func uptr(v uint) *uint { return &v }

func TestCompileSeccomp(t *testing.T) {
	errno := func(e unix.Errno) uint32 { return retErrno | uint32(e) }
	eperm := errno(unix.EPERM)
	x := syscallsX86_64()
	i386 := syscallsX86()
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getpid", "read", "write", "set_thread_area", "no_such_syscall"}, Action: specs.ActAllow},
			{Names: []string{"chown", "fchownat"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EACCES))},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENOSYS))},
			{Names: []string{"kill"}, Action: specs.ActKillProcess},
			{Names: []string{"tkill"}, Action: specs.ActTrap},
			{Names: []string{"tgkill"}, Action: specs.ActLog},
			// Docker's clone rule: no namespace flags.
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7e020000, Op: specs.OpMaskedEqual}}},
			// Docker's personality rules: one entry per allowed value.
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			// Conditions on different arguments are ANDed.
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 2, Op: specs.OpEqualTo}, {Index: 1, Value: 3, Op: specs.OpNotEqual}}},
			// Two conditions on one argument are ORed (runc's rule).
			{Names: []string{"getpriority"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 1 << 32, Op: specs.OpGreaterEqual}, {Index: 1, Value: 10, Op: specs.OpLessThan}}},
			{Names: []string{"setpriority"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0x100000005, Op: specs.OpLessEqual}}},
			{Names: []string{"lseek"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0x100000005, Op: specs.OpGreaterThan}}},
			// A conditional errno before an unconditional allow.
			{Names: []string{"ioctl"}, Action: specs.ActAllow},
			{Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENOTTY)), Args: []specs.LinuxSeccompArg{{Index: 1, Value: unix.TIOCSTI, Op: specs.OpEqualTo}}},
		},
	}
	f, err := compileSeccomp(profile)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.unknown) != 1 || f.unknown[0] != "no_such_syscall" {
		t.Errorf("unknown = %v, want [no_such_syscall]", f.unknown)
	}
	const arch64, arch32 = auditArchX86_64, auditArchI386
	tests := []struct {
		name string
		arch uint32
		nr   uint32
		args []uint64
		want uint32
	}{
		{"allowed", arch64, x["getpid"], nil, retAllow},
		{"default errno", arch64, x["mount"], nil, eperm},
		{"errnoRet", arch64, x["chown"], nil, errno(unix.EACCES)},
		{"errnoRet fchownat", arch64, x["fchownat"], nil, errno(unix.EACCES)},
		{"enosys rule", arch64, x["clone3"], nil, errno(unix.ENOSYS)},
		{"kill process", arch64, x["kill"], nil, retKillProcess},
		{"trap", arch64, x["tkill"], nil, retTrap},
		{"log", arch64, x["tgkill"], nil, retLog},
		{"newer than the profile", arch64, 1000, nil, errno(unix.ENOSYS)},
		{"clone threads", arch64, x["clone"], []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, retAllow},
		{"clone newns", arch64, x["clone"], []uint64{unix.CLONE_NEWNS}, eperm},
		{"clone newuser", arch64, x["clone"], []uint64{unix.CLONE_NEWUSER | unix.CLONE_VM}, eperm},
		{"clone high bits ignored by mask", arch64, x["clone"], []uint64{1 << 40}, retAllow},
		{"personality 0", arch64, x["personality"], []uint64{0}, retAllow},
		{"personality query", arch64, x["personality"], []uint64{0xffffffff}, retAllow},
		{"personality other", arch64, x["personality"], []uint64{8}, eperm},
		{"personality high word", arch64, x["personality"], []uint64{1 << 32}, eperm},
		{"socket both hold", arch64, x["socket"], []uint64{2, 1}, retAllow},
		{"socket second fails", arch64, x["socket"], []uint64{2, 3}, eperm},
		{"socket first fails", arch64, x["socket"], []uint64{10, 1}, eperm},
		{"socket ne high word", arch64, x["socket"], []uint64{2, 3 | 1<<32}, retAllow},
		{"or: low", arch64, x["getpriority"], []uint64{0, 9}, retAllow},
		{"or: high", arch64, x["getpriority"], []uint64{0, 1 << 32}, retAllow},
		{"or: neither", arch64, x["getpriority"], []uint64{0, 10}, eperm},
		{"or: just below high", arch64, x["getpriority"], []uint64{0, 1<<32 - 1}, eperm},
		{"le equal", arch64, x["setpriority"], []uint64{0, 0, 0x100000005}, retAllow},
		{"le below in low word", arch64, x["setpriority"], []uint64{0, 0, 0x100000004}, retAllow},
		{"le below in high word", arch64, x["setpriority"], []uint64{0, 0, 0xffffffff}, retAllow},
		{"le above", arch64, x["setpriority"], []uint64{0, 0, 0x100000006}, eperm},
		{"le above in high word", arch64, x["setpriority"], []uint64{0, 0, 0x200000000}, eperm},
		{"gt above", arch64, x["lseek"], []uint64{0, 0x100000006}, retAllow},
		{"gt equal", arch64, x["lseek"], []uint64{0, 0x100000005}, eperm},
		{"gt high word", arch64, x["lseek"], []uint64{0, 0x200000000}, retAllow},
		{"gt low word only", arch64, x["lseek"], []uint64{0, 0xffffffff}, eperm},
		{"conditional before unconditional", arch64, x["ioctl"], []uint64{0, unix.TIOCSTI}, errno(unix.ENOTTY)},
		{"unconditional fallback", arch64, x["ioctl"], []uint64{0, unix.TCGETS}, retAllow},
		{"i386 allowed", arch32, i386["getpid"], nil, retAllow},
		{"i386 errno", arch32, i386["chown"], nil, errno(unix.EACCES)},
		{"i386 default", arch32, i386["mount"], nil, eperm},
		{"i386 32-bit compare", arch32, i386["personality"], []uint64{0xffffffff}, retAllow},
		{"i386 socket", arch32, i386["socket"], []uint64{2, 1}, retAllow},
		{"x32 shared number", arch64, x["getpid"] | x32SyscallBit, nil, retAllow},
		{"x32 own number", arch64, 514 | x32SyscallBit, []uint64{0, unix.TIOCSTI}, errno(unix.ENOTTY)},
		{"x32 errno", arch64, x["chown"] | x32SyscallBit, nil, errno(unix.EACCES)},
		{"x32 32-bit compare", arch64, x["personality"] | x32SyscallBit, []uint64{1 << 32}, retAllow},
		{"x32 has no x86_64-only syscalls", arch64, x["set_thread_area"] | x32SyscallBit, nil, eperm},
		{"unknown arch", 0xc00000b7, x["getpid"], nil, retKillThread},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runBPF(t, f.prog, seccompData(tt.arch, tt.nr, tt.args...))
			if got != tt.want {
				t.Errorf("got %#x, want %#x", got, tt.want)
			}
		})
	}
}

func TestCompileSeccompArchitectures(t *testing.T) {
	allow := []specs.LinuxSyscall{{Names: []string{"getpid"}, Action: specs.ActAllow}}
	tests := []struct {
		name     string
		arches   []specs.Arch
		arch, nr uint32
		want     uint32
	}{
		{"native only: i386 killed", nil, auditArchI386, syscallsX86()["getpid"], retKillThread},
		{"native only: x32 killed", nil, auditArchX86_64, syscallsX86_64()["getpid"] | x32SyscallBit, retKillThread},
		{"native only: native allowed", nil, auditArchX86_64, syscallsX86_64()["getpid"], retAllow},
		{"x86_64 without x32", []specs.Arch{specs.ArchX86_64, specs.ArchX86}, auditArchX86_64, syscallsX86_64()["getpid"] | x32SyscallBit, retKillThread},
		{"foreign arch in profile", []specs.Arch{specs.ArchAARCH64}, auditArchX86_64, syscallsX86_64()["getpid"], retAllow},
		// runc's enosys stub covers only the architectures the profile names.
		{"no enosys stub without architectures", nil, auditArchX86_64, 1000, retKillProcess},
		{"enosys stub for a named architecture", []specs.Arch{specs.ArchX86_64}, auditArchX86_64, 1000, retErrno | uint32(unix.ENOSYS)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := compileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Architectures: tt.arches, Syscalls: allow})
			if err != nil {
				t.Fatal(err)
			}
			if got := runBPF(t, f.prog, seccompData(tt.arch, tt.nr)); got != tt.want {
				t.Errorf("got %#x, want %#x", got, tt.want)
			}
		})
	}
}

func TestCompileSeccompDefaultAllow(t *testing.T) {
	f, err := compileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"chown"}, Action: specs.ActErrno},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// No enosys stub when everything else is allowed anyway.
	if got := runBPF(t, f.prog, seccompData(auditArchX86_64, 1000)); got != retAllow {
		t.Errorf("a syscall newer than the profile: got %#x, want allow", got)
	}
	if got := runBPF(t, f.prog, seccompData(auditArchX86_64, syscallsX86_64()["chown"])); got != retErrno|uint32(unix.EPERM) {
		t.Errorf("chown: got %#x, want EPERM (the default errno)", got)
	}
}

func TestCompileSeccompErrors(t *testing.T) {
	tests := []struct {
		name string
		p    specs.LinuxSeccomp
		want string
	}{
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, "NOTIFY"},
		{"listener", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/x"}, "listenerPath"},
		{"bad default", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}, "unknown seccomp action"},
		{"bad op", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_NOPE"}}}}}, "operator"},
		{"bad index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "index"},
		{"bad errno", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(1 << 20)}, "out of range"},
		{"bad flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NOPE"}}, "flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileSeccomp(&tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestCompileSeccompLargeProfile: a profile the size of Docker's default
// (every syscall named, three ABIs) fits the kernel's instruction limit.
func TestCompileSeccompLargeProfile(t *testing.T) {
	var names []string
	for n := range syscallsX86_64() {
		names = append(names, n)
	}
	for n := range syscallsX86() {
		names = append(names, n)
	}
	f, err := compileSeccomp(&specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: names, Action: specs.ActAllow},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7e020000, Op: specs.OpMaskedEqual}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.prog) > maxFilterInstructions {
		t.Fatalf("%d instructions", len(f.prog))
	}
	t.Logf("%d syscall names, %d instructions", len(names), len(f.prog))
}

// seccompChildEnv makes the test binary a child that loads a filter and
// tries syscalls under it (the filter cannot be removed from a process).
const seccompChildEnv = "KATA_CONTAINERINIT_SECCOMP_CHILD"

func init() {
	if os.Getenv(seccompChildEnv) == "" {
		return
	}
	os.Exit(seccompChild(os.Getenv(seccompChildEnv)))
}

func seccompChild(dir string) int {
	runtime.LockOSThread()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return 1
	}
	f, err := compileSeccomp(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"chown", "fchown", "fchownat", "lchown"}, Action: specs.ActErrno},
			{Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.E2BIG)),
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1 << 32, Op: specs.OpGreaterEqual}}},
		},
	})
	if err != nil {
		return fail("compile: %v", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("no_new_privs: %v", err)
	}
	if err := f.load(); err != nil {
		return fail("%v", err)
	}
	file := filepath.Join(dir, "f")
	if err := unix.Fchownat(unix.AT_FDCWD, file, os.Getuid(), os.Getgid(), 0); !errors.Is(err, unix.EPERM) {
		return fail("fchownat under the filter: %v, want EPERM", err)
	}
	if pid, _, _ := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0); int(pid) != os.Getpid() {
		return fail("getpid under the filter: %d", pid)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 1<<32, 0); e != unix.E2BIG {
		return fail("getpriority(who=1<<32): %v, want E2BIG", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_GETPRIORITY, unix.PRIO_PROCESS, 0, 0); e != 0 {
		return fail("getpriority(who=0): %v, want success", e)
	}
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return fail("stat under the filter: %v", err)
	}
	fmt.Println("seccomp child ok")
	return 0
}

// TestSeccompFilterLoaded loads a compiled filter for real in a child and
// checks what the kernel does with it.
func TestSeccompFilterLoaded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the filter, the same fchownat succeeds (to the same owner).
	if err := unix.Fchownat(unix.AT_FDCWD, filepath.Join(dir, "f"), os.Getuid(), os.Getgid(), 0); err != nil {
		t.Fatalf("fchownat without a filter: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), seccompChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "seccomp child ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestFilterWire: the filter the agent compiles reaches the child intact through the config's
// JSON, and a program of the wrong size is refused before it is loaded.
func TestFilterWire(t *testing.T) {
	profile := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "no_such_syscall"}, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
		}}
	want, err := compileSeccomp(profile)
	if err != nil {
		t.Fatal(err)
	}
	f, unknown, err := CompileSeccomp(profile)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unknown, []string{"no_such_syscall"}) {
		t.Errorf("unknown = %v", unknown)
	}
	b, err := json.Marshal(Config{Seccomp: f})
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	got, err := cfg.Seccomp.decode()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.prog, want.prog) || got.flags != want.flags {
		t.Errorf("decoded filter differs: %d instructions, flags %#x; want %d, %#x", len(got.prog), got.flags, len(want.prog), want.flags)
	}
	for _, size := range []int{0, 7, 12, (bpfMaxInstructions + 1) * sockFilterSize} {
		if _, err := (&Filter{Program: make([]byte, size)}).decode(); err == nil {
			t.Errorf("a %d-byte program was accepted", size)
		}
	}
}

// TestWithoutSeccomp: the copy for the receiver of a compiled filter loses the profile, the spec
// given keeps it, and a spec without one is returned as it is.
func TestWithoutSeccomp(t *testing.T) {
	spec := &specs.Spec{
		Process: &specs.Process{Args: []string{"true"}},
		Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			MaskedPaths: []string{"/proc/kcore", "/proc/acpi"}},
	}
	slim := WithoutSeccomp(spec)
	if slim.Linux.Seccomp != nil {
		t.Error("the receiver's copy still carries the profile")
	}
	if spec.Linux.Seccomp == nil {
		t.Error("the spec given lost its profile")
	}
	if len(slim.Linux.MaskedPaths) != len(spec.Linux.MaskedPaths) || slim.Process != spec.Process {
		t.Error("the copy lost more than the profile")
	}
	bare := &specs.Spec{}
	if WithoutSeccomp(bare) != bare {
		t.Error("a spec without a profile was copied")
	}
}
