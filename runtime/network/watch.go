package network

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// events is a netlink socket in the container's namespace that hears about every change of its
// links, addresses and routes. The Manager does not parse the notifications: any of them means
// "look again", and reconcile compares the whole state.
type events struct {
	sock *nl.NetlinkSocket
	ch   chan struct{} // one pending "something changed"
	done chan struct{} // closed when the socket is closed and the reader has exited
}

func subscribe(ns netns.NsHandle) (*events, error) {
	sock, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE,
		unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR,
		unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("watching the container's network namespace (netlink): %w", err)
	}
	e := &events{sock: sock, ch: make(chan struct{}, 1), done: make(chan struct{})}
	go e.read()
	return e, nil
}

// read turns notifications into signals until the socket is closed.
func (e *events) read() {
	defer close(e.done)
	for {
		_, _, err := e.sock.Receive()
		// ENOBUFS: notifications were lost because we fell behind. The socket stays usable, and
		// a signal makes reconcile look at the whole state again, so nothing is missed.
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			return
		}
		select {
		case e.ch <- struct{}{}:
		default:
		}
	}
}

func (e *events) close() {
	e.sock.Close()
	<-e.done
}

// watch reconciles after every burst of changes until the Manager closes.
func (m *Manager) watch(e *events) {
	defer e.close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-m.ctx.Done():
			timer.Stop()
			return
		case <-e.done:
			m.opts.Logf("stopped watching the container's network namespace: the netlink socket failed; docker network connect/disconnect will not reach the VM")
			return
		case <-e.ch:
			timer.Reset(settle)
		case <-timer.C:
			if err := m.reconcile(m.ctx); err != nil && m.ctx.Err() == nil {
				m.opts.Logf("updating the VM's network: %v", err)
			}
			m.watchDNS()
		}
	}
}

// listRetrying repeats a netlink dump that the kernel interrupted because the state changed
// under it; the result would be incomplete.
func listRetrying[T any](list func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range 5 {
		out, err = list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
