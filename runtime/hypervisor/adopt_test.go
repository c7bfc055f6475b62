package hypervisor

import "testing"

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
