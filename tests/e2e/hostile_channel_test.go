package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// dockerWithin runs the docker CLI and gives up after limit; it returns the output, the exit
// code, how long it took and whether it was cut off.
func dockerWithin(t *testing.T, limit time.Duration, args ...string) (result, time.Duration, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}, took, ctx.Err() != nil
}

// TestHostileChannelStatsWhilePaused: a paused kata container does not stall `docker stats` for
// every container (dockerd collects them one at a time; the guest cannot answer while paused),
// and `docker rm -f` of the paused container finishes without the guest.
func TestHostileChannelStatsWhilePaused(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "busybox", "sleep", "600")
	if res := docker(t, "", "pause", name); res.code != 0 {
		t.Fatalf("docker pause: %s", res.stderr)
	}
	res, took, cut := dockerWithin(t, 60*time.Second, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
	if cut || res.code != 0 {
		t.Fatalf("docker stats --no-stream with %s paused: cut off %v after %s, exit %d, stderr %q", name, cut, took.Round(time.Millisecond), res.code, res.stderr)
	}
	t.Logf("docker stats --no-stream with a paused kata container took %s", took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("docker stats --no-stream took %s with a paused kata container, want a few seconds", took.Round(time.Millisecond))
	}
	if !strings.Contains(res.stdout, name) {
		t.Errorf("docker stats does not list the paused container: %q", res.stdout)
	}
	res, took, cut = dockerWithin(t, 90*time.Second, "rm", "-f", name)
	t.Logf("docker rm -f of the paused kata container took %s", took.Round(time.Millisecond))
	if cut || res.code != 0 {
		t.Fatalf("docker rm -f of a paused kata container: cut off %v after %s, exit %d, stderr %q", cut, took.Round(time.Millisecond), res.code, res.stderr)
	}
	if took > 20*time.Second {
		t.Errorf("docker rm -f of a paused kata container took %s", took.Round(time.Millisecond))
	}
}

// TestHostileChannelForgedSource: root in a kata guest (--privileged) claims an address that is
// not its own, then a MAC that is not its NIC's, and talks to a runc container on the same
// network. The runc container's ARP table learns the kata container's real address (the path
// works) and nothing of the forged ones.
func TestHostileChannelForgedSource(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	victim, attacker := netName(t, "victim"), netName(t, "attacker")
	detached(t, victim, "runc", "--network", network, "busybox", "sleep", "600")
	detached(t, attacker, "kata", "--network", network, "--privileged", "busybox", "sleep", "600")
	victimIP, attackerIP := containerIP(t, victim, network), containerIP(t, attacker, network)
	forged := net.ParseIP(victimIP).To4()
	forged = net.IPv4(forged[0], forged[1], forged[2]^0x80, 200) // same /16, unused
	forgedMAC := "02:42:de:ad:be:ef"
	arpTable := func() string { return docker(t, "", "exec", victim, "cat", "/proc/net/arp").stdout }

	// The path works: the real address reaches the victim and lands in its ARP table.
	if res := docker(t, "", "exec", attacker, "ping", "-c", "1", "-W", "10", victimIP); res.code != 0 {
		t.Fatalf("kata -> runc ping: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
	if table := arpTable(); !strings.Contains(table, attackerIP+" ") {
		t.Fatalf("the victim's ARP table lacks the kata container's real address %s:\n%s", attackerIP, table)
	}

	// A forged source address: ARP claims and IP packets from it.
	// The setup must succeed (else nothing forged is sent); the probes may go unanswered.
	script := fmt.Sprintf(`ip addr add %[1]s/32 dev eth0 || exit 10
arping -c 2 -w 3 -s %[1]s -I eth0 %[2]s; arping -U -c 2 -w 3 -s %[1]s -I eth0 %[1]s;
ping -c 2 -W 2 -I %[1]s %[2]s; true`, forged, victimIP)
	if res := docker(t, "", "exec", attacker, "sh", "-c", script); res.code != 0 {
		t.Fatalf("forging an address in the guest: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
	// A forged source MAC, with the real address.
	script = fmt.Sprintf(`ip addr del %[1]s/32 dev eth0; ip link set eth0 address %[2]s || exit 11
ip link show eth0 | grep -qi %[2]s || exit 12
ip neigh flush dev eth0; arping -c 2 -w 3 -I eth0 %[3]s; ping -c 2 -W 2 %[3]s; true`, forged, forgedMAC, victimIP)
	if res := docker(t, "", "exec", attacker, "sh", "-c", script); res.code != 0 {
		t.Fatalf("forging a MAC in the guest: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
	time.Sleep(time.Second)
	table := arpTable()
	if strings.Contains(table, forged.String()+" ") {
		t.Errorf("the victim learned the forged address %s:\n%s", forged, table)
	}
	if strings.Contains(table, forgedMAC) {
		t.Errorf("the victim learned the forged MAC %s:\n%s", forgedMAC, table)
	}
}
