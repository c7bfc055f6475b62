package agentproto

import (
	"strings"
	"testing"
)

func TestRestoredValidate(t *testing.T) {
	good := make([]byte, RestoreEntropyLen)
	tests := []struct {
		name string
		r    *Restored
		want string // "" = valid
	}{
		{"valid", &Restored{Entropy: good, UnixNano: 1}, ""},
		{"missing", nil, "no entropy"},
		{"short", &Restored{Entropy: good[:1], UnixNano: 1}, "bytes of entropy"},
		{"long", &Restored{Entropy: append(good, 0), UnixNano: 1}, "bytes of entropy"},
		{"no time", &Restored{Entropy: good}, "not after 1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
