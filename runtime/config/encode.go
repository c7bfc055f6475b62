package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// header opens every encoded file.
const header = `# kata-deploy runtime configuration (QEMU).
#
# Read by containerd-shim-kata-v2 for every container started with
# "docker run --runtime=kata". "kata-deploy install" writes this file with the
# paths and accelerator it detected on this host. Unknown keys are errors, so
# a misspelt key is reported (with its line) instead of being ignored.
# A key left out takes the default shown in this file's shipped version.
`

// sectionDocs introduces each table.
func sectionDocs() map[string]string {
	return map[string]string{
		"hypervisor": "The virtual machine: which QEMU, guest kernel and initrd, and its size.",
		"agent":      "The guest agent: PID 1 in the VM, reached over the virtio-serial port agent.0.",
		"runtime":    "The shim itself.",
		"factory":    "How VMs are made faster than by a cold boot.",
	}
}

// keyDocs documents every key; a test checks that none is missing.
func keyDocs() map[string]string {
	return map[string]string{
		"hypervisor.path": "Absolute path to the QEMU binary (qemu-system-x86_64).",
		"hypervisor.kernel": "Guest kernel: an uncompressed ELF vmlinux, which QEMU boots directly through its\n" +
			"PVH entry point (a bzImage also works but boots slower).",
		"hypervisor.initrd": "Guest initrd (newc cpio) whose /init is the kata-deploy agent, with the virtio,\n" +
			"9p and virtio-fs modules it loads.",
		"hypervisor.firmware": "Firmware passed to QEMU with -bios. qboot (shipped with Debian's QEMU) starts the\n" +
			"kernel fastest; \"\" uses QEMU's default firmware (SeaBIOS).",
		"hypervisor.machine_type": "QEMU machine type: \"q35\" (recommended) or \"pc\".",
		"hypervisor.accelerator": "\"kvm\" (hardware virtualization), \"tcg\" (emulation: works everywhere, about 10x\n" +
			"slower) or \"auto\" (kvm when it is usable, else tcg with a warning).",
		"hypervisor.kernel_params": "Extra guest kernel parameters, space separated, appended to the built-in fast-boot\n" +
			"set (console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check ...); a later\n" +
			"parameter overrides an earlier one.",
		"hypervisor.default_vcpus":  "Virtual CPUs of a VM when the container sets no CPU limit.",
		"hypervisor.default_memory": "Memory of a VM in MiB when the container sets no memory limit.",
		"hypervisor.shared_fs": "How the container's root filesystem reaches the guest: \"virtio-9p\" (built into\n" +
			"QEMU, fastest start) or \"virtio-fs\" (needs virtio_fs_daemon).",
		"hypervisor.virtio_fs_daemon": "Absolute path to virtiofsd; used only with shared_fs = \"virtio-fs\".",
		"hypervisor.memory_overhead": "MiB added to a container's memory limit (docker run --memory) to size its VM,\n" +
			"for the guest kernel and agent.",
		"hypervisor.tcg_translation_buffer": "Under emulation (tcg) only, with [factory] template: MiB of translated code a\n" +
			"template's clone keeps (QEMU's -accel tcg,tb-size). 0 keeps QEMU's default, which\n" +
			"leaves each clone all it translated while starting (about 37 MiB). 24 cuts an idle\n" +
			"clone's host memory by about 18 MiB, but the clone translates again what a full\n" +
			"buffer flushed: about 0.2 s more per start, 0.35 s for a pooled clone.",
		"agent.debug": "Verbose agent logging (written to the VM console log in the state directory).",
		"agent.boot_timeout": "How long to wait for the guest agent to answer after QEMU starts, as a duration\n" +
			"(\"30s\", \"1m\"). Emulated (tcg) guests need more than kvm ones.",
		"runtime.state_dir": "Directory for per-container state (QMP and agent sockets, pid files, console log).\n" +
			"At most 28 bytes: unix socket paths below it (<state_dir>/<id>/vm/agent.sock) must\n" +
			"stay within the kernel's 107-byte limit.",
		"runtime.debug": "Verbose shim logging, and the guest console without \"quiet\".",
		"factory.template": "Start each VM as a clone of a template VM booted once (kept under\n" +
			"<state_dir>.cache/template, rebuilt when the kernel, initrd, QEMU or this file\n" +
			"change): faster starts, and clones share their unchanged guest memory. Off by\n" +
			"default, because it weakens isolation between containers: clones share guest\n" +
			"memory, and with QEMU before 8.2 every clone's QEMU can write the template's\n" +
			"memory file, so a guest that escaped into its QEMU could alter the VMs of later\n" +
			"containers (docs/security.md). Needs shared_fs = \"virtio-9p\";\n" +
			"a container that does not fit the template (a memory or CPU limit, a disk)\n" +
			"boots cold.",
		"factory.pool": "How many clones of the template to keep restored and running, ready for the\n" +
			"next containers (0 to 16; needs template = true). A container takes one instead\n" +
			"of restoring a clone, which under emulation (tcg) halves its start; the pool is\n" +
			"refilled in the background. Each waiting clone costs host memory (about 40 MiB\n" +
			"under tcg) and a little CPU.",
	}
}

// Encode writes c as a commented TOML document in the layout of the
// shipped configuration-qemu.toml.
func Encode(c *Config) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	sections, keys := sectionDocs(), keyDocs()
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		table := v.Type().Field(i).Tag.Get("toml")
		fmt.Fprintf(&b, "\n%s[%s]\n", comment(sections[table]), table)
		sv := v.Field(i)
		for j := range sv.NumField() {
			key := sv.Type().Field(j).Tag.Get("toml")
			doc, ok := keys[table+"."+key]
			if !ok {
				return nil, fmt.Errorf("config: key %s.%s has no documentation", table, key)
			}
			val, err := tomlValue(sv.Field(j))
			if err != nil {
				return nil, fmt.Errorf("config: encode %s.%s: %w", table, key, err)
			}
			fmt.Fprintf(&b, "\n%s%s = %s\n", comment(doc), key, val)
		}
	}
	return b.Bytes(), nil
}

func comment(doc string) string {
	if doc == "" {
		return ""
	}
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		b.WriteString("# " + line + "\n")
	}
	return b.String()
}

// tomlValue formats the few kinds of value the configuration holds.
func tomlValue(v reflect.Value) (string, error) {
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		t, err := m.MarshalText()
		if err != nil {
			return "", err
		}
		return quote(string(t)), nil
	}
	switch v.Kind() {
	case reflect.String:
		return quote(v.String()), nil
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10), nil
	default:
		return "", fmt.Errorf("unsupported kind %s", v.Kind())
	}
}

// quote writes a TOML basic string. TOML's escapes differ from Go's
// (no \x), so strconv.Quote cannot be used.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
