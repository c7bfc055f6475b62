package network

import (
	"context"
	"sync"
	"time"
)

// A container started without Docker's embedded DNS (on the default bridge) gets it when it is
// connected to its first user-defined network: Docker rewrites its resolv.conf to name
// 127.0.0.11, a little after the new link appears in the namespace. The relay is started then.

// Bounds of the look for a resolv.conf that came to name 127.0.0.11 after a change.
const (
	dnsRecheckFor   = 10 * time.Second
	dnsRecheckEvery = 200 * time.Millisecond
)

// dnsStart records whether the relay runs, and whether a look for it is under way.
type dnsStart struct {
	mu       sync.Mutex
	started  bool
	checking bool
}

// ensureDNS starts the relay once, the first time opts.DNS says it is wanted.
func (m *Manager) ensureDNS(ctx context.Context) error {
	m.dns.mu.Lock()
	defer m.dns.mu.Unlock()
	if m.dns.started || m.opts.DNS == nil || !m.opts.DNS() {
		return nil
	}
	if err := m.startDNS(ctx); err != nil {
		return err
	}
	m.dns.started = true
	return nil
}

// watchDNS, after a change of the namespace, looks for a while for a resolv.conf that now wants
// the relay (Docker writes it after it configured the link), unless the relay runs already or a
// look is under way.
func (m *Manager) watchDNS() {
	m.dns.mu.Lock()
	if m.dns.started || m.dns.checking || m.opts.DNS == nil {
		m.dns.mu.Unlock()
		return
	}
	m.dns.checking = true
	m.dns.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			m.dns.mu.Lock()
			m.dns.checking = false
			m.dns.mu.Unlock()
		}()
		tick := time.NewTicker(dnsRecheckEvery)
		defer tick.Stop()
		deadline := time.After(dnsRecheckFor)
		for {
			if err := m.ensureDNS(m.ctx); err != nil {
				if m.ctx.Err() == nil {
					m.opts.Logf("%v", err)
				}
				return
			}
			m.dns.mu.Lock()
			started := m.dns.started
			m.dns.mu.Unlock()
			if started {
				return
			}
			select {
			case <-m.ctx.Done():
				return
			case <-deadline:
				return
			case <-tick.C:
			}
		}
	}()
}
