package p2p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// watchAddrs calls gone with each address this machine loses, as the kernel
// announces it (an RTM_DELADDR message on a route netlink socket: no poll, no
// wake-up while nothing changes), until ctx ends. It returns an error only
// if the socket cannot be opened.
func watchAddrs(ctx context.Context, gone func(net.IP)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("netlink bind: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink") // non-blocking: read through the poller, Close unblocks it
	stop, closed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(closed)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = f.Close()
	}()
	defer func() { close(stop); <-closed }() // nothing of it outlives the call
	buf := make([]byte, 1<<16)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Messages were dropped (a burst of changes outran this loop): nothing to do but read
			// on. os.File wraps the errno, so only errors.Is sees it.
			if errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			return fmt.Errorf("netlink read: %w", err)
		}
		for _, ip := range deletedAddrs(buf[:n]) {
			gone(ip)
		}
	}
}

// deletedAddrs lists the addresses that the RTM_DELADDR messages in b remove.
// b comes from the kernel, but is parsed defensively all the same.
func deletedAddrs(b []byte) []net.IP {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil
	}
	var out []net.IP
	for i := range msgs {
		if msgs[i].Header.Type != unix.RTM_DELADDR {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&msgs[i])
		if err != nil {
			continue
		}
		var addr, local net.IP
		for _, a := range attrs {
			if len(a.Value) != net.IPv4len && len(a.Value) != net.IPv6len {
				continue
			}
			switch a.Attr.Type {
			case unix.IFA_ADDRESS:
				addr = net.IP(append([]byte(nil), a.Value...))
			case unix.IFA_LOCAL:
				local = net.IP(append([]byte(nil), a.Value...))
			}
		}
		if local != nil { // the local end on a point-to-point link, else the same as IFA_ADDRESS
			addr = local
		}
		if addr != nil {
			out = append(out, addr)
		}
	}
	return out
}
