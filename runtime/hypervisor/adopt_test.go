package hypervisor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestAdoptNIC: a NIC plugged by the process that started a VM is recorded in the slot it had,
// found by NICSlot, unpluggable, and its slot is not given to the next NIC.
func TestAdoptNIC(t *testing.T) {
	vm := &VM{cfg: Config{ID: "adopted", MachineType: "q35"}}
	if err := vm.AdoptNIC("nicspare", 0); err != nil {
		t.Fatal(err)
	}
	if got := vm.NICSlot("nicspare"); got != 0 {
		t.Errorf("NICSlot = %d, want 0", got)
	}
	if slot, err := vm.nics.claim("nic7"); err != nil || slot != 1 {
		t.Errorf("the next NIC got slot %d (%v), want 1", slot, err)
	}
	for _, tc := range []struct {
		id   string
		slot int
	}{{"nicspare2", 0}, {"bad id;", 2}, {"nic9", -1}, {"nic9", NICSlots}} {
		if err := vm.AdoptNIC(tc.id, tc.slot); err == nil {
			t.Errorf("AdoptNIC(%q, %d) was accepted", tc.id, tc.slot)
		}
	}
	if got := vm.NICSlot("none"); got != -1 {
		t.Errorf("NICSlot of an unknown NIC = %d, want -1", got)
	}
}

// TestAdoptRefusesAnotherProcess: a pid file naming a process that is not the VM's QEMU (a pid
// reused) is refused, and nothing of the attempt stays: no pidfd, no goroutine watching it.
func TestAdoptRefusesAnotherProcess(t *testing.T) {
	other := sleeper(t, "not-qemu")
	cfg := Config{ID: "adopted", StateDir: t.TempDir()}
	if err := os.WriteFile(newLayout(cfg.StateDir).pid, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fds, goroutines := openFds(t), runtime.NumGoroutine()
	vm, err := Adopt(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "is not the QEMU of") {
		t.Fatalf("Adopt of another process = %v, %v; want refused", vm, err)
	}
	if got := openFds(t); got != fds {
		t.Errorf("open descriptors %d after the refusal, %d before", got, fds)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("goroutines %d after the refusal, %d before", got, goroutines)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
