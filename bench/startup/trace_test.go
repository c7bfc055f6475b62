package main

import (
	"testing"
	"time"
)

func TestParseConsole(t *testing.T) {
	console := "random line without a timestamp\n" +
		"[    0.000000] Linux version 6.1.0-57-amd64\n" +
		"[    1.500000] kata-agent: loaded 6 of 6 modules in 400ms\n" +
		"[    1.510000] kata-agent: agent test ready, serving on agent.0\n" +
		"[    1.550000] kata-agent: module group 9p: loaded 5 of 5 modules in 40ms\n" +
		"[    1.600000] kata-agent: host session started\n" +
		"[    1.610000] kata-agent: request ping container=\"\" exec=\"\"\n" +
		"[    1.700000] kata-agent: request create container=\"abc\" exec=\"\"\n" +
		"[    2.200000] kata-agent: request start container=\"abc\" exec=\"\"\n" +
		"[    2.300000] kata-agent: request wait container=\"abc\" exec=\"\"\n"
	tests := []struct {
		name    string
		in      string
		want    []traceStep
		wantErr bool
	}{
		{"boot to start", console, []traceStep{
			{"guest kernel boot, until /init runs", 1100 * time.Millisecond},
			{"agent: load 6 modules", 1500 * time.Millisecond},
			{"agent: until its port is open", 1510 * time.Millisecond},
			{"until module group 9p is loaded (in the background)", 1550 * time.Millisecond},
			{"until the host connects (handshake)", 1600 * time.Millisecond},
			{"until request ping", 1610 * time.Millisecond},
			{"until request create", 1700 * time.Millisecond},
			{"until request start", 2200 * time.Millisecond},
		}, false},
		{"no start request", "[    1.0] kata-agent: host session started\n", nil, true},
		{"empty", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConsole([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseConsole error = %v, want error %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseConsole = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].Name != tt.want[i].Name || (got[i].Took-tt.want[i].Took).Abs() > time.Microsecond {
					t.Errorf("step %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestStartTicks(t *testing.T) {
	stat := "42 (qemu (x)) S 1 42 42 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 3 0 123456 1000 10 rest"
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"field 22", stat, 123456, false},
		{"short", "42 (x) S 1 2", 0, true},
		{"no comm", "garbage", 0, true},
	}
	for _, tt := range tests {
		got, err := startTicks([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: startTicks = %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}
