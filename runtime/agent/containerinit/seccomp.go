package containerinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// This file compiles the OCI seccomp profile (spec.Linux.Seccomp) into a
// classic BPF program for seccomp(2), in pure Go so that the agent stays a
// static binary without cgo. The semantics follow libseccomp as runc uses
// it: the audit architecture is checked first, a syscall's rules are tried
// in order (conditional ones before an unconditional one), the conditions of
// a rule are ANDed unless two of them test the same argument (then each is a
// rule of its own, as runc does), arguments are compared as 64-bit values on
// x86_64 (two 32-bit words) and as 32-bit values on i386 and x32, and syscalls
// newer than any the profile names return ENOSYS instead of the default
// action (runc's "enosys stub", so that libc falls back from e.g. clone3).

// Return values of a seccomp filter (linux/seccomp.h).
const (
	retKillProcess uint32 = 0x80000000
	retKillThread  uint32 = 0x00000000
	retTrap        uint32 = 0x00030000
	retErrno       uint32 = 0x00050000
	retTrace       uint32 = 0x7ff00000
	retLog         uint32 = 0x7ffc0000
	retAllow       uint32 = 0x7fff0000
	retDataMask    uint32 = 0x0000ffff
)

// Audit architectures (linux/audit.h) and the x32 syscall bit.
const (
	auditArchX86_64 uint32 = 0xc000003e
	auditArchI386   uint32 = 0x40000003
	x32SyscallBit   uint32 = 0x40000000
)

// Offsets in struct seccomp_data (little-endian x86).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Flags of seccomp(SECCOMP_SET_MODE_FILTER).
const (
	seccompSetModeFilter    = 1
	seccompFlagLog          = 1 << 1
	seccompFlagSpecAllow    = 1 << 2
	maxFilterInstructions   = 4096 // BPF_MAXINSNS
	maxSeccompArgs          = 6
	defaultSeccompErrnoCode = uint32(unix.EPERM)
)

// x32Specific are the x32 syscalls whose numbers differ from x86_64's
// (arch/x86/entry/syscalls/syscall_64.tbl, "x32" entries 512-547).
var x32Specific = map[string]uint32{
	"rt_sigaction": 512, "rt_sigreturn": 513, "ioctl": 514, "readv": 515, "writev": 516,
	"recvfrom": 517, "sendmsg": 518, "recvmsg": 519, "execve": 520, "ptrace": 521,
	"rt_sigpending": 522, "rt_sigtimedwait": 523, "rt_sigqueueinfo": 524, "sigaltstack": 525,
	"timer_create": 526, "mq_notify": 527, "kexec_load": 528, "waitid": 529,
	"set_robust_list": 530, "get_robust_list": 531, "vmsplice": 532, "move_pages": 533,
	"preadv": 534, "pwritev": 535, "rt_tgsigqueueinfo": 536, "recvmmsg": 537, "sendmmsg": 538,
	"process_vm_readv": 539, "process_vm_writev": 540, "setsockopt": 541, "getsockopt": 542,
	"io_setup": 543, "io_submit": 544, "execveat": 545, "preadv2": 546, "pwritev2": 547,
}

// x32Missing are the x86_64-only syscalls ("64" in syscall_64.tbl) that
// have no x32 entry at all.
var x32Missing = map[string]bool{
	"uselib": true, "_sysctl": true, "create_module": true, "get_kernel_syms": true, "query_module": true,
	"nfsservctl": true, "getpmsg": true, "putpmsg": true, "afs_syscall": true, "tuxcall": true, "security": true,
	"set_thread_area": true, "get_thread_area": true, "epoll_ctl_old": true, "epoll_wait_old": true,
	"vserver": true, "uretprobe": true, "map_shadow_stack": true,
}

// syscallsX86_64 and syscallsX86 map syscall names to numbers, built on first use
// (syscalls_x86.go says why).
var (
	syscallsX86_64 = sync.OnceValue(syscallTableX86_64)
	syscallsX86    = sync.OnceValue(syscallTableX86)
)

// seccompABI is one syscall ABI the filter handles.
type seccompABI int

const (
	abiX86_64 seccompABI = iota
	abiX32
	abiX86
)

func (a seccompABI) syscallNumber(name string) (uint32, bool) {
	switch a {
	case abiX86_64:
		nr, ok := syscallsX86_64()[name]
		return nr, ok
	case abiX32:
		if nr, ok := x32Specific[name]; ok {
			return nr | x32SyscallBit, true
		}
		if x32Missing[name] {
			return 0, false
		}
		nr, ok := syscallsX86_64()[name]
		return nr | x32SyscallBit, ok
	default:
		nr, ok := syscallsX86()[name]
		return nr, ok
	}
}

// seccompCond is one argument comparison.
type seccompCond struct {
	index         uint
	op            specs.LinuxSeccompOperator
	value, value2 uint64
}

// seccompRule is an action taken when any of its conjunctions matches (an
// empty list: always).
type seccompRule struct {
	action uint32
	any    [][]seccompCond
}

// seccompFilter is a compiled profile.
type seccompFilter struct {
	prog  []unix.SockFilter
	flags uintptr
	// unknown lists syscall names no ABI of the filter knows (ignored,
	// as runc does).
	unknown []string
}

// seccompActionValue turns an OCI action into a filter return value.
func seccompActionValue(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	code := defaultSeccompErrnoCode
	if errnoRet != nil {
		if *errnoRet > uint(retDataMask) {
			return 0, fmt.Errorf("seccomp errnoRet %d is out of range", *errnoRet)
		}
		code = uint32(*errnoRet)
	}
	switch act {
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActErrno:
		return retErrno | code, nil
	case specs.ActTrace:
		return retTrace | code, nil
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActNotify:
		return 0, errors.New("seccomp action SCMP_ACT_NOTIFY is not supported by this runtime")
	}
	return 0, fmt.Errorf("unknown seccomp action %q", act)
}

func validOp(op specs.LinuxSeccompOperator) bool {
	switch op {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		return true
	}
	return false
}

// Filter is a compiled seccomp filter, as the agent sends it to the child. A container's profile
// is compiled once: by the shim on the host (agentproto.Seccomp), or by the agent in its own warm
// process when the spec carries it; a fresh child would decode the profile (most of a Docker
// container's spec) and compile it again for the container's start and every exec.
type Filter struct {
	// Program is the filter's struct sock_filter array, sockFilterSize bytes each, in the
	// host's byte order.
	Program []byte  `json:"program"`
	Flags   uintptr `json:"flags,omitempty"`
}

// sockFilterSize is the size of a struct sock_filter: code (16 bits), jt, jf (8), k (32).
const sockFilterSize = 8

// bpfMaxInstructions is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const bpfMaxInstructions = 4096

// CompileSeccomp compiles a container's profile; unknown lists the syscall names no ABI of the
// filter knows (left out, as runc does).
func CompileSeccomp(s *specs.LinuxSeccomp) (f *Filter, unknown []string, err error) {
	c, err := compileSeccomp(s)
	if err != nil {
		return nil, nil, err
	}
	prog := make([]byte, 0, len(c.prog)*sockFilterSize)
	for _, in := range c.prog {
		prog = binary.NativeEndian.AppendUint16(prog, in.Code)
		prog = append(prog, in.Jt, in.Jf)
		prog = binary.NativeEndian.AppendUint32(prog, in.K)
	}
	return &Filter{Program: prog, Flags: c.flags}, c.unknown, nil
}

// WithoutSeccomp returns a copy of spec without its seccomp profile, for whoever receives the
// profile compiled (the agent, the child); spec itself is not changed, and a spec without a
// profile comes back as it is.
func WithoutSeccomp(spec *specs.Spec) *specs.Spec {
	if spec == nil || spec.Linux == nil || spec.Linux.Seccomp == nil {
		return spec
	}
	slim, linux := *spec, *spec.Linux
	linux.Seccomp = nil
	slim.Linux = &linux
	return &slim
}

// Check reports a program that is not 1 to BPF_MAXINSNS whole instructions (the kernel checks
// the instructions themselves when it loads them).
func (f *Filter) Check() error {
	_, err := f.decode()
	return err
}

// decode turns the program back into instructions to load.
func (f *Filter) decode() (*seccompFilter, error) {
	n := len(f.Program) / sockFilterSize
	if n == 0 || n > bpfMaxInstructions || len(f.Program)%sockFilterSize != 0 {
		return nil, fmt.Errorf("the seccomp filter is %d bytes, not 1 to %d instructions of %d bytes", len(f.Program), bpfMaxInstructions, sockFilterSize)
	}
	c := &seccompFilter{prog: make([]unix.SockFilter, n), flags: f.Flags}
	for i := range c.prog {
		b := f.Program[i*sockFilterSize:]
		c.prog[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	return c, nil
}

// compileSeccomp compiles the profile for the x86 ABIs it names (x86_64 is
// always included: it is the agent's own).
func compileSeccomp(s *specs.LinuxSeccomp) (*seccompFilter, error) {
	if s.ListenerPath != "" {
		return nil, errors.New("seccomp listenerPath (user notification) is not supported by this runtime")
	}
	def, err := seccompActionValue(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp default action: %w", err)
	}
	f := &seccompFilter{}
	for _, fl := range s.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			f.flags |= seccompFlagLog
		case specs.LinuxSeccompFlagSpecAllow:
			f.flags |= seccompFlagSpecAllow
		case specs.LinuxSeccompFlagWaitKillableRecv:
			// Only meaningful with a notification listener.
		default:
			return nil, fmt.Errorf("unknown seccomp flag %q", fl)
		}
	}
	abis := map[seccompABI]bool{abiX86_64: true}
	// runc's enosys stub covers the architectures the profile names.
	listed := map[seccompABI]bool{}
	for _, a := range s.Architectures {
		switch a {
		case specs.ArchX86_64, "SCMP_ARCH_NATIVE":
			listed[abiX86_64] = true
		case specs.ArchX32:
			abis[abiX32], listed[abiX32] = true, true
		case specs.ArchX86:
			abis[abiX86], listed[abiX86] = true, true
		}
	}
	rules := map[seccompABI]map[uint32][]seccompRule{}
	for abi := range abis {
		rules[abi] = map[uint32][]seccompRule{}
	}
	known := map[string]bool{}
	var order []string
	for i, sc := range s.Syscalls {
		act, err := seccompActionValue(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp rule %d: %w", i, err)
		}
		rule := seccompRule{action: act}
		perIndex := map[uint]int{}
		var conds []seccompCond
		for _, a := range sc.Args {
			if a.Index >= maxSeccompArgs {
				return nil, fmt.Errorf("seccomp rule %d: argument index %d is out of range", i, a.Index)
			}
			if !validOp(a.Op) {
				return nil, fmt.Errorf("seccomp rule %d: unknown operator %q", i, a.Op)
			}
			perIndex[a.Index]++
			conds = append(conds, seccompCond{index: a.Index, op: a.Op, value: a.Value, value2: a.ValueTwo})
		}
		shared := false
		for _, n := range perIndex {
			shared = shared || n > 1
		}
		switch {
		case len(conds) == 0:
		case shared: // runc: one rule per condition
			for _, c := range conds {
				rule.any = append(rule.any, []seccompCond{c})
			}
		default:
			rule.any = [][]seccompCond{conds}
		}
		for _, name := range sc.Names {
			found := false
			for abi := range abis {
				nr, ok := abi.syscallNumber(name)
				if !ok {
					continue
				}
				found = true
				rules[abi][nr] = append(rules[abi][nr], rule)
			}
			if !found && !known[name] {
				known[name] = true
				order = append(order, name)
			}
		}
	}
	f.unknown = order
	f.prog, err = assembleSeccomp(abis, listed, rules, def)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// bpfAsm assembles classic BPF with symbolic forward jumps. Conditional
// jumps only ever skip one instruction, and far targets are reached with
// BPF_JA (32-bit offset), so no program size breaks an 8-bit offset.
type bpfAsm struct {
	ins    []unix.SockFilter
	labels []int // label -> instruction index, -1 while unbound
	fixups []struct{ at, label int }
}

func (a *bpfAsm) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *bpfAsm) bind(l int) { a.labels[l] = len(a.ins) }

func (a *bpfAsm) emit(code uint16, jt, jf uint8, k uint32) {
	a.ins = append(a.ins, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
}

func (a *bpfAsm) load(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, off) }
func (a *bpfAsm) and(k uint32)    { a.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, k) }
func (a *bpfAsm) ret(k uint32)    { a.emit(unix.BPF_RET|unix.BPF_K, 0, 0, k) }

func (a *bpfAsm) jump(l int) {
	a.fixups = append(a.fixups, struct{ at, label int }{len(a.ins), l})
	a.emit(unix.BPF_JMP|unix.BPF_JA, 0, 0, 0)
}

// jumpIf jumps to l when "A op k" holds.
func (a *bpfAsm) jumpIf(op uint16, k uint32, l int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, 0, 1, k)
	a.jump(l)
}

// jumpUnless jumps to l when "A op k" does not hold.
func (a *bpfAsm) jumpUnless(op uint16, k uint32, l int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, 1, 0, k)
	a.jump(l)
}

func (a *bpfAsm) finish() ([]unix.SockFilter, error) {
	for _, f := range a.fixups {
		to := a.labels[f.label]
		if to < 0 || to <= f.at {
			return nil, fmt.Errorf("internal error: bad jump from %d to label %d", f.at, f.label)
		}
		a.ins[f.at].K = uint32(to - f.at - 1)
	}
	if len(a.ins) > maxFilterInstructions {
		return nil, fmt.Errorf("seccomp profile compiles to %d BPF instructions, more than the kernel's %d", len(a.ins), maxFilterInstructions)
	}
	return a.ins, nil
}

func assembleSeccomp(abis, listed map[seccompABI]bool, rules map[seccompABI]map[uint32][]seccompRule, def uint32) ([]unix.SockFilter, error) {
	a := &bpfAsm{}
	// A syscall from an architecture the profile does not cover is killed,
	// libseccomp's default "bad architecture" action.
	const badArch = retKillThread
	sec64, sec32 := a.label(), a.label()
	a.load(offArch)
	a.jumpIf(unix.BPF_JEQ, auditArchX86_64, sec64)
	if abis[abiX86] {
		a.jumpIf(unix.BPF_JEQ, auditArchI386, sec32)
	}
	a.ret(badArch)

	a.bind(sec64)
	a.load(offNr)
	x32 := a.label()
	if abis[abiX32] {
		a.jumpIf(unix.BPF_JGE, x32SyscallBit, x32)
	} else {
		a.emit(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, 0, 1, x32SyscallBit)
		a.ret(badArch)
	}
	assembleABI(a, rules[abiX86_64], def, true, listed[abiX86_64])
	if abis[abiX32] {
		// x32 is a 32-bit ABI: libseccomp compares its arguments as
		// 32-bit values, like i386's.
		a.bind(x32)
		assembleABI(a, rules[abiX32], def, false, listed[abiX32])
	}
	if abis[abiX86] {
		a.bind(sec32)
		a.load(offNr)
		assembleABI(a, rules[abiX86], def, false, listed[abiX86])
	}
	return a.finish()
}

// assembleABI emits the checks of one ABI; A holds the syscall number on
// entry, and every path ends in a return.
func assembleABI(a *bpfAsm, rules map[uint32][]seccompRule, def uint32, wide, enosysStub bool) {
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	// runc's enosys stub: a syscall newer than the profile is unknown to it, and ENOSYS lets
	// libc fall back to an older one.
	beyond := def
	if enosysStub && len(nrs) > 0 && def != retAllow && def != retLog && def != retErrno|uint32(unix.ENOSYS) {
		beyond = retErrno | uint32(unix.ENOSYS)
	}
	assemblePieces(a, syscallPieces(nrs, rules, def, beyond), def, wide)
}

// A piece is a run of syscall numbers that ends at hi and starts after the previous piece: one
// action for all of them, or the rules of a single syscall whose arguments decide.
type piece struct {
	hi     uint32
	action uint32
	rules  []seccompRule // conditional rules first (orderRules); nil: action
}

// syscallPieces cuts the whole range of syscall numbers into pieces: the syscalls of the profile
// (sorted nrs), the gaps between them (def) and what lies beyond the last one (beyond).
// Neighbours with the same action are one piece: Docker's default profile allows long runs of
// consecutive syscalls, so its program is a fraction of one test per syscall. That matters under
// emulation: the program travels to the guest and into every container process, and the guest
// checks and translates it at each container's start and exec.
func syscallPieces(nrs []uint32, rules map[uint32][]seccompRule, def, beyond uint32) []piece {
	var ps []piece
	add := func(p piece) {
		if n := len(ps); n > 0 && p.rules == nil && ps[n-1].rules == nil && ps[n-1].action == p.action {
			ps[n-1].hi = p.hi
			return
		}
		ps = append(ps, p)
	}
	next := uint32(0) // the first number no piece covers yet
	for _, nr := range nrs {
		if nr > next {
			add(piece{hi: nr - 1, action: def})
		}
		if rs := orderRules(rules[nr]); len(rs[0].any) == 0 {
			add(piece{hi: nr, action: rs[0].action})
		} else {
			add(piece{hi: nr, rules: rs})
		}
		next = nr + 1
	}
	add(piece{hi: math.MaxUint32, action: beyond})
	return ps
}

// linearPieces is how many pieces a leaf of the search tree tests one after the other.
const linearPieces = 8

// assemblePieces dispatches on the syscall number (A) with a binary search over the pieces, which
// cover every number from the search's lower bound up to the last piece's hi: a syscall costs a
// few comparisons rather than one per syscall of the profile.
func assemblePieces(a *bpfAsm, ps []piece, def uint32, wide bool) {
	if len(ps) > linearPieces {
		mid := len(ps) / 2
		upper := a.label()
		a.jumpIf(unix.BPF_JGT, ps[mid-1].hi, upper)
		assemblePieces(a, ps[:mid], def, wide)
		a.bind(upper)
		assemblePieces(a, ps[mid:], def, wide)
		return
	}
	// Each piece starts after the one tested before it: A is in it unless A is above its hi.
	for i, p := range ps {
		last := i == len(ps)-1
		if p.rules == nil {
			if !last {
				a.emit(unix.BPF_JMP|unix.BPF_JGT|unix.BPF_K, 1, 0, p.hi)
			}
			a.ret(p.action)
			continue
		}
		next := a.label()
		if !last {
			a.jumpIf(unix.BPF_JGT, p.hi, next)
		}
		assembleRules(a, p.rules, def, wide)
		a.bind(next)
	}
}

// orderRules puts conditional rules first, in profile order, then the
// first unconditional one (any later rule could never match).
func orderRules(rs []seccompRule) []seccompRule {
	var out []seccompRule
	var uncond *seccompRule
	for i := range rs {
		if len(rs[i].any) > 0 {
			out = append(out, rs[i])
		} else if uncond == nil {
			uncond = &rs[i]
		}
	}
	if uncond != nil {
		out = append(out, *uncond)
	}
	return out
}

func assembleRules(a *bpfAsm, rs []seccompRule, def uint32, wide bool) {
	for _, r := range rs {
		if len(r.any) == 0 {
			a.ret(r.action)
			return
		}
		for _, conj := range r.any {
			fail := a.label()
			for _, c := range conj {
				assembleCond(a, c, fail, wide)
			}
			a.ret(r.action)
			a.bind(fail)
		}
	}
	a.ret(def)
}

// assembleCond falls through when c holds and jumps to fail otherwise.
func assembleCond(a *bpfAsm, c seccompCond, fail int, wide bool) {
	lo := uint32(offArgs + 8*c.index)
	hi := lo + 4
	v, vhi := uint32(c.value), uint32(c.value>>32)
	if !wide {
		switch c.op {
		case specs.OpEqualTo:
			a.load(lo)
			a.jumpUnless(unix.BPF_JEQ, v, fail)
		case specs.OpNotEqual:
			a.load(lo)
			a.jumpIf(unix.BPF_JEQ, v, fail)
		case specs.OpGreaterThan:
			a.load(lo)
			a.jumpUnless(unix.BPF_JGT, v, fail)
		case specs.OpGreaterEqual:
			a.load(lo)
			a.jumpUnless(unix.BPF_JGE, v, fail)
		case specs.OpLessThan:
			a.load(lo)
			a.jumpIf(unix.BPF_JGE, v, fail)
		case specs.OpLessEqual:
			a.load(lo)
			a.jumpIf(unix.BPF_JGT, v, fail)
		case specs.OpMaskedEqual:
			a.load(lo)
			a.and(v)
			a.jumpUnless(unix.BPF_JEQ, uint32(c.value2), fail)
		}
		return
	}
	ok := a.label()
	switch c.op {
	case specs.OpEqualTo:
		a.load(hi)
		a.jumpUnless(unix.BPF_JEQ, vhi, fail)
		a.load(lo)
		a.jumpUnless(unix.BPF_JEQ, v, fail)
	case specs.OpNotEqual:
		a.load(hi)
		a.jumpUnless(unix.BPF_JEQ, vhi, ok)
		a.load(lo)
		a.jumpIf(unix.BPF_JEQ, v, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.load(hi)
		a.jumpIf(unix.BPF_JGT, vhi, ok)
		a.jumpUnless(unix.BPF_JEQ, vhi, fail)
		a.load(lo)
		if c.op == specs.OpGreaterThan {
			a.jumpUnless(unix.BPF_JGT, v, fail)
		} else {
			a.jumpUnless(unix.BPF_JGE, v, fail)
		}
	case specs.OpLessThan, specs.OpLessEqual:
		a.load(hi)
		a.jumpIf(unix.BPF_JGT, vhi, fail)
		a.jumpUnless(unix.BPF_JEQ, vhi, ok)
		a.load(lo)
		if c.op == specs.OpLessThan {
			a.jumpIf(unix.BPF_JGE, v, fail)
		} else {
			a.jumpIf(unix.BPF_JGT, v, fail)
		}
	case specs.OpMaskedEqual:
		a.load(hi)
		a.and(vhi)
		a.jumpUnless(unix.BPF_JEQ, uint32(c.value2>>32), fail)
		a.load(lo)
		a.and(v)
		a.jumpUnless(unix.BPF_JEQ, uint32(c.value2), fail)
	}
	a.bind(ok)
}

// load installs the filter on the calling thread, which must then execve:
// the new program keeps it. The caller needs no_new_privs or CAP_SYS_ADMIN.
func (f *seccompFilter) load() error {
	if len(f.prog) == 0 {
		return errors.New("empty seccomp filter")
	}
	prog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, seccompSetModeFilter, f.flags, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("load the seccomp filter (%d instructions): %w", len(f.prog), errno)
	}
	return nil
}
