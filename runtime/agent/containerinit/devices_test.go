package containerinit

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDeviceCgroupRules(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	rule := func(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: n(major), Minor: n(minor), Access: access}
	}
	// What Docker 29 puts in a default container's spec.
	docker := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		rule(true, "c", 1, 5, "rwm"), rule(true, "c", 1, 3, "rwm"), rule(true, "c", 1, 9, "rwm"),
		rule(true, "c", 1, 8, "rwm"), rule(true, "c", 5, 0, "rwm"), rule(true, "c", 5, 1, "rwm"),
		rule(false, "c", 10, 229, "rwm"),
	}
	runcDefaults := []DeviceWrite{
		{"devices.allow", "c *:* m"}, {"devices.allow", "b *:* m"}, {"devices.allow", "c 1:7 rwm"},
		{"devices.allow", "c 136:* rwm"}, {"devices.allow", "c 5:2 rwm"}, {"devices.allow", "c 10:200 rwm"},
	}
	tests := []struct {
		name      string
		rules     []specs.LinuxDeviceCgroup
		want      []DeviceWrite
		wantNotes int
	}{
		{
			name:  "docker default: deny all, the standard nodes, no guest console",
			rules: docker,
			want: append([]DeviceWrite{
				{"devices.deny", "a"},
				{"devices.allow", "c 1:5 rwm"}, {"devices.allow", "c 1:3 rwm"}, {"devices.allow", "c 1:9 rwm"},
				{"devices.allow", "c 1:8 rwm"}, {"devices.allow", "c 5:0 rwm"}, {"devices.allow", "c 5:1 m"},
			}, runcDefaults...),
			wantNotes: 1,
		},
		{
			name:  "privileged: everything, consoles included",
			rules: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
			want:  []DeviceWrite{{"devices.allow", "a"}},
		},
		{
			name:  "no rules at all: runc's defaults change nothing of allow-all",
			rules: nil,
			want:  []DeviceWrite{{"devices.allow", "a"}},
		},
		{
			name: "a later deny removes an exact allow, access by access",
			rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
				rule(true, "c", 42, -1, "rwm"), rule(false, "c", 42, -1, "w"), rule(true, "b", 8, 0, "r")},
			want: append([]DeviceWrite{{"devices.deny", "a"}, {"devices.allow", "c 42:* rm"}, {"devices.allow", "b 8:0 r"}},
				runcDefaults[0], runcDefaults[1], DeviceWrite{"devices.allow", "c 1:3 rwm"}, DeviceWrite{"devices.allow", "c 1:8 rwm"},
				runcDefaults[2], DeviceWrite{"devices.allow", "c 5:0 rwm"}, DeviceWrite{"devices.allow", "c 1:5 rwm"},
				DeviceWrite{"devices.allow", "c 1:9 rwm"}, runcDefaults[3], runcDefaults[4], runcDefaults[5]),
		},
		{
			name: "allow all then deny one",
			rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, rule(true, "c", 1, 3, "rwm"),
				{Allow: true, Type: "a", Access: "rwm"}, rule(false, "c", 1, 1, "rwm")},
			want: []DeviceWrite{{"devices.allow", "a"}, {"devices.deny", "c 1:1 rwm"}},
		},
		{
			name:      "serial and hvc consoles asked for explicitly stay out",
			rules:     []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, rule(true, "c", 4, 64, "rw"), rule(true, "c", 229, -1, "rwm")},
			want:      append([]DeviceWrite{{"devices.deny", "a"}, {"devices.allow", "c 229:* m"}}, docker7(runcDefaults)...),
			wantNotes: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notes, err := DeviceCgroupRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%v\nwant\n%v", got, tt.want)
			}
			if len(notes) != tt.wantNotes {
				t.Errorf("notes %q, want %d", notes, tt.wantNotes)
			}
		})
	}
}

// docker7 is runc's defaults after a deny-all spec without other rules.
func docker7(runcDefaults []DeviceWrite) []DeviceWrite {
	return []DeviceWrite{runcDefaults[0], runcDefaults[1], {"devices.allow", "c 1:3 rwm"}, {"devices.allow", "c 1:8 rwm"},
		runcDefaults[2], {"devices.allow", "c 5:0 rwm"}, {"devices.allow", "c 1:5 rwm"}, {"devices.allow", "c 1:9 rwm"},
		runcDefaults[3], runcDefaults[4], runcDefaults[5]}
}

func TestDeviceCgroupRulesErrors(t *testing.T) {
	for _, r := range []specs.LinuxDeviceCgroup{{Allow: true, Type: "x"}, {Allow: true, Type: "c", Access: "rwx"}} {
		if _, _, err := DeviceCgroupRules([]specs.LinuxDeviceCgroup{r}); err == nil || !strings.Contains(err.Error(), "device") {
			t.Errorf("%+v: err = %v, want an error", r, err)
		}
	}
}
