package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The container's own confinement inside the guest: the guest kernel is the boundary's first wall,
// so a kata container gets the seccomp filter, no_new_privs and device rules a runc container gets.
// Each test runs the same command under runc and kata and compares.

var bothRuntimes = []string{"runc", "kata"}

// runIn runs a throwaway container under rt and returns its result.
func runIn(t *testing.T, rt string, args ...string) result {
	t.Helper()
	return docker(t, "", append([]string{"run", "--rm", "--runtime=" + rt}, args...)...)
}

var unshareResult = regexp.MustCompile(`unshare=(ok|refused)`)

var statusField = regexp.MustCompile(`(?m)^(Seccomp|NoNewPrivs):\s*(\d+)$`)

// confinement returns the Seccomp and NoNewPrivs fields of /proc/self/status as "Seccomp=2 NoNewPrivs=0".
func confinement(t *testing.T, status string) string {
	t.Helper()
	f := map[string]string{}
	for _, m := range statusField.FindAllStringSubmatch(status, -1) {
		f[m[1]] = m[2]
	}
	return "Seccomp=" + f["Seccomp"] + " NoNewPrivs=" + f["NoNewPrivs"]
}

func TestHostileGuestSeccompDefaultProfile(t *testing.T) {
	requireKata(t)
	// unshare(CLONE_NEWUSER) needs no capability: only Docker's default profile refuses it.
	const script = `cat /proc/self/status; unshare -U true && echo unshare=ok || echo unshare=refused`
	tests := []struct {
		opts []string
		want string
	}{
		{nil, "Seccomp=2 NoNewPrivs=0 unshare=refused"},
		{[]string{"--security-opt", "no-new-privileges"}, "Seccomp=2 NoNewPrivs=1 unshare=refused"},
		{[]string{"--security-opt", "seccomp=unconfined"}, "Seccomp=0 NoNewPrivs=0 unshare=ok"},
	}
	for _, tt := range tests {
		for _, rt := range bothRuntimes {
			t.Run(rt+" "+strings.Join(tt.opts, " "), func(t *testing.T) {
				res := runIn(t, rt, append(tt.opts, "busybox", "sh", "-c", script)...)
				got := confinement(t, res.stdout)
				if m := unshareResult.FindString(res.stdout); m != "" {
					got += " " + m
				}
				if res.code != 0 || got != tt.want {
					t.Errorf("%s: got %q (exit %d, stderr %q), want %q", rt, got, res.code, res.stderr, tt.want)
				}
			})
		}
	}
}

// A custom profile that denies chown makes chown fail under kata exactly as under runc (moby's
// integration test TestSeccomp), for the container's first process and for an exec'd one.
func TestHostileGuestSeccompCustomProfile(t *testing.T) {
	requireKata(t)
	profile := filepath.Join(t.TempDir(), "deny-chown.json")
	const deny = `{"defaultAction": "SCMP_ACT_ALLOW",
 "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
 "syscalls": [
  {"names": ["chown", "lchown", "fchown", "fchownat", "chown32", "lchown32", "fchown32"], "action": "SCMP_ACT_ERRNO"},
  {"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
  {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
 ]}`
	if err := os.WriteFile(profile, []byte(deny), 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `touch /tmp/f; chown 1 /tmp/f 2>&1; echo chown=$?; chmod 600 /tmp/f 2>&1; echo chmod=$?; stat -c %u /tmp/f`
	var outs []string
	for _, rt := range bothRuntimes {
		res := runIn(t, rt, "--security-opt", "seccomp="+profile, "busybox", "sh", "-c", script)
		out := res.stdout
		if res.code != 0 || !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "chown=1") ||
			!strings.Contains(out, "Permission denied") || !strings.Contains(out, "chmod=1") || !strings.HasSuffix(out, "\n0\n") {
			t.Errorf("%s: chown and chmod must be refused by the profile: exit %d, output %q, stderr %q", rt, res.code, out, res.stderr)
		}
		outs = append(outs, out)
	}
	if len(outs) == 2 && outs[0] != outs[1] {
		t.Errorf("runc and kata differ:\nrunc: %q\nkata: %q", outs[0], outs[1])
	}
	// docker exec gets the container's profile too.
	name := startDetached(t, "--security-opt", "seccomp="+profile, "busybox", "sleep", "600")
	res := docker(t, "", "exec", name, "sh", "-c", "grep ^Seccomp: /proc/self/status; touch /tmp/g; chown 1 /tmp/g; echo chown=$?")
	if !strings.Contains(res.stdout, "Seccomp:\t2") || !strings.Contains(res.stdout, "chown=1") || !strings.Contains(res.stderr, "Operation not permitted") {
		t.Errorf("exec under the profile: stdout %q stderr %q, want Seccomp 2 and chown refused", res.stdout, res.stderr)
	}
}

// openDevice is a shell snippet that creates a device node and opens it for writing (no data is
// written), printing "<label>=ok", "<label>=denied" (EPERM: the device cgroup, or a missing
// capability) or "<label>=error" (anything else, e.g. no such device in this kernel).
func openDevice(label, typ string, major, minor int) string {
	node := "/dev/hostile-" + label
	return fmt.Sprintf(`mknod %[1]s %[2]s %[3]d %[4]d 2>/dev/null; `+
		`if r=$(timeout 10 sh -c ': >>%[1]s' 2>&1); then echo %[5]s=ok; else case "$r" in *"not permitted"*) echo %[5]s=denied;; *) echo %[5]s=error;; esac; fi; `,
		node, typ, major, minor, label)
}

// A default container can reach only the devices runc allows it (no /dev/mem, /dev/kmsg, disks); on
// top of runc, a kata container never reaches the guest's consoles, whose output goes to the host's
// console log (runc lets Docker's default container open c 5:1). A privileged container may, as under
// runc.
func TestHostileGuestDevices(t *testing.T) {
	requireKata(t)
	script := openDevice("null", "c", 1, 3) + openDevice("mem", "c", 1, 1) + openDevice("kmsg", "c", 1, 11) +
		openDevice("vda", "b", 254, 0) + openDevice("console", "c", 5, 1) + openDevice("ttyS0", "c", 4, 64) +
		openDevice("hvc0", "c", 229, 0)
	// Serial ports may block in open without a carrier: the privileged case leaves them out.
	privileged := openDevice("null", "c", 1, 3) + openDevice("mem", "c", 1, 1) + openDevice("kmsg", "c", 1, 11) +
		openDevice("console", "c", 5, 1)
	tests := []struct {
		rt     string
		opts   []string
		script string
		want   string
	}{
		{"runc", nil, script, "null=ok mem=denied kmsg=denied vda=denied console=ok ttyS0=denied hvc0=denied"},
		{"kata", nil, script, "null=ok mem=denied kmsg=denied vda=denied console=denied ttyS0=denied hvc0=denied"},
		{"runc", []string{"--device-cgroup-rule", "c 1:11 w"}, script, "null=ok mem=denied kmsg=ok vda=denied console=ok ttyS0=denied hvc0=denied"},
		{"kata", []string{"--device-cgroup-rule", "c 1:11 w"}, script, "null=ok mem=denied kmsg=ok vda=denied console=denied ttyS0=denied hvc0=denied"},
		// Privileged: nothing is denied (a device may still fail to open for its own reasons).
		{"runc", []string{"--privileged"}, privileged, ""},
		{"kata", []string{"--privileged"}, privileged, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rt+" "+strings.Join(tt.opts, " "), func(t *testing.T) {
			res := runIn(t, tt.rt, append(tt.opts, "busybox", "sh", "-c", tt.script)...)
			got := strings.Join(strings.Fields(res.stdout), " ")
			if tt.want == "" {
				if res.code != 0 || strings.Count(got, "=") != 4 || strings.Contains(got, "=denied") {
					t.Errorf("got %q (exit %d, stderr %q), want nothing denied", got, res.code, res.stderr)
				}
			} else if res.code != 0 || got != tt.want {
				t.Errorf("got %q (exit %d, stderr %q)\nwant %q", got, res.code, res.stderr, tt.want)
			}
		})
	}
	// A process started with docker exec is in the container's device cgroup too.
	name := startDetached(t, "busybox", "sleep", "600")
	res := docker(t, "", "exec", name, "sh", "-c", openDevice("kmsg", "c", 1, 11)+openDevice("zero", "c", 1, 5))
	if got := strings.Join(strings.Fields(res.stdout), " "); got != "kmsg=denied zero=ok" {
		t.Errorf("exec: got %q (stderr %q), want kmsg denied and zero allowed", got, res.stderr)
	}
}
