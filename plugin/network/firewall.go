package network

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// chain holds the driver's forwarding rules; FORWARD jumps to it after Docker's own chains,
// which leave other bridges' traffic to the policy (DROP once Docker ran).
const chain = "KATA-NET"

// IPTables is Firewall with the iptables command Docker itself uses here (same backend). Its
// arguments are the driver's own link names and subnets parsed by net.ParseCIDR: nothing of a
// user reaches it unparsed, and no shell is involved.
type IPTables struct {
	Path string // "" = iptables from PATH
}

// rules are a network's: its traffic may leave it and come back, and is masqueraded when it
// leaves through another interface.
func rules(bridge, subnet string) [][]string {
	return [][]string{
		{"-t", "filter", chain, "-i", bridge, "-j", "ACCEPT"},
		{"-t", "filter", chain, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"},
	}
}

func (f IPTables) Allow(bridge, subnet string) error {
	if err := f.ensureChain(); err != nil {
		return err
	}
	for _, r := range rules(bridge, subnet) {
		if err := f.ensure(r); err != nil {
			return err
		}
	}
	return nil
}

func (f IPTables) Revoke(bridge, subnet string) error {
	var errs []error
	for _, r := range rules(bridge, subnet) {
		for f.run(withOp("-C", r)...) == nil {
			if err := f.run(withOp("-D", r)...); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	errs = append(errs, f.dropChainIfEmpty())
	return errors.Join(errs...)
}

// dropChainIfEmpty removes the chain and FORWARD's jump once no network has rules in it, so that
// the last network leaves nothing behind.
func (f IPTables) dropChainIfEmpty() error {
	out, err := f.output("-t", "filter", "-S", chain)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		return nil // no chain, or rules of other networks
	}
	for f.run("-t", "filter", "-C", "FORWARD", "-j", chain) == nil {
		if err := f.run("-t", "filter", "-D", "FORWARD", "-j", chain); err != nil {
			return err
		}
	}
	return f.run("-t", "filter", "-X", chain)
}

// ensureChain makes the chain and FORWARD's jump to it, once.
func (f IPTables) ensureChain() error {
	if f.run("-t", "filter", "-S", chain) != nil {
		if err := f.run("-t", "filter", "-N", chain); err != nil {
			return err
		}
	}
	return f.ensure([]string{"-t", "filter", "FORWARD", "-j", chain})
}

// ensure appends rule r (table flag, chain, match...) unless it is there.
func (f IPTables) ensure(r []string) error {
	if f.run(withOp("-C", r)...) == nil {
		return nil
	}
	return f.run(withOp("-A", r)...)
}

// withOp puts an operation before the chain of r: -t TABLE OP CHAIN MATCH...
func withOp(op string, r []string) []string {
	out := append([]string{}, r[:2]...)
	return append(append(out, op), r[2:]...)
}

func (f IPTables) run(args ...string) error {
	_, err := f.output(args...)
	return err
}

func (f IPTables) output(args ...string) (string, error) {
	path := f.Path
	if path == "" {
		path = "iptables"
	}
	out, err := exec.Command(path, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
