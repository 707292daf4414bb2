package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// freezingProxy forwards TCP connections to target from the local address
// 127.0.0.2 until frozen; then it forwards nothing more and closes nothing, as
// a path to a machine whose address went away: the connections it carries
// stay open on both ends and lead nowhere.
type freezingProxy struct {
	ln     net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			out, err := d.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			p.wg.Add(2)
			go p.pipe(out, in)
			go p.pipe(in, out)
		}
	}()
	return p
}

// pipe copies from src to dst, dropping everything once the proxy is frozen.
func (p *freezingProxy) pipe(dst io.Writer, src io.Reader) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tcpAddr is h's loopback TCP listen address.
func tcpAddr(t *testing.T, h *Host) multiaddr.Multiaddr {
	t.Helper()
	for _, a := range h.Host().Addrs() {
		if _, err := a.ValueForProtocol(multiaddr.P_TCP); err == nil {
			return a
		}
	}
	t.Fatalf("%s has no TCP address: %v", h.ID(), h.Host().Addrs())
	return nil
}

// remoteIPs lists the remote IPs of a's open connections to p.
func remoteIPs(a *Host, p peer.ID) []string {
	var out []string
	for _, c := range a.Host().Network().ConnsToPeer(p) {
		if ip, err := manet.ToIP(c.RemoteMultiaddr()); err == nil {
			out = append(out, ip.String())
		}
	}
	return out
}

// A peer that moved connects again from its new address while its connection from the old one
// still looks open (nothing told either end it leads nowhere): the older connection is probed
// and closed within the probe's deadline, so new streams go over the live one. Before, it stayed
// for yamux's keepalive to give up (about 40 s), and libp2p kept opening streams on it.
func TestMovedPeerOldConnectionIsClosed(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	keyB := testKey(t)
	b, _ := newTestHost(t, "c", keyB)
	proxy := connectThroughProxy(t, b, a)
	waitFor(t, 5*time.Second, "A to see B at 127.0.0.2", func() bool {
		ips := remoteIPs(a, b.ID())
		return len(ips) == 1 && ips[0] == "127.0.0.2"
	})

	proxy.frozen.Store(true) // B's old address is gone
	// B connects again from its new address. libp2p dials no second connection to a peer it is
	// connected to, so a second host with B's key stands for B's new connection: to A it is the
	// same peer, from another address.
	moved, _ := newTestHost(t, "c", keyB)
	connect(t, moved, a)
	waitOldConnClosed(t, a, b.ID())
}

// connectThroughProxy connects b to a through a new freezingProxy, so that a sees b at
// 127.0.0.2, and returns the proxy.
func connectThroughProxy(t *testing.T, b, a *Host) *freezingProxy {
	t.Helper()
	target, err := manet.ToNetAddr(tcpAddr(t, a))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, target.String())
	via := multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", proxy.ln.Addr().(*net.TCPAddr).Port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Host().Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: []multiaddr.Multiaddr{via}}); err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	return proxy
}

// waitOldConnClosed waits, within the probe's deadline, until a's only connection to p comes
// from 127.0.0.1: the one from p's old address (the frozen proxy's 127.0.0.2) was probed and
// closed.
func waitOldConnClosed(t *testing.T, a *Host, p peer.ID) {
	t.Helper()
	waitFor(t, 2*probeTimeout+2*time.Second, "A to close the connection from B's old address", func() bool {
		ips := remoteIPs(a, p)
		return len(ips) == 1 && ips[0] == "127.0.0.1"
	})
}

// A connection whose local end is an address the machine lost is closed at once (addrGone, as the
// kernel's RTM_DELADDR calls it); one from another address stays.
func TestConnectionFromALostAddressIsClosed(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	b, _ := newTestHost(t, "c", nil)
	connect(t, b, a)
	b.addrGone(net.IPv4(127, 0, 0, 9)) // not an address of any connection: nothing closes
	if b.Host().Network().Connectedness(a.ID()) != network.Connected {
		t.Fatal("a connection was closed for an address it does not use")
	}
	b.addrGone(net.IPv4(127, 0, 0, 1))
	waitFor(t, 5*time.Second, "B's connections from 127.0.0.1 to close", func() bool {
		for _, c := range b.Host().Network().ConnsToPeer(a.ID()) {
			if ip, err := manet.ToIP(c.LocalMultiaddr()); err == nil && ip.Equal(net.IPv4(127, 0, 0, 1)) {
				return false
			}
		}
		return true
	})
}

// noAnswer takes only a timeout for silence: a stream the peer refused or reset is an answer,
// and closing that connection would cut a live peer off.
func TestNoAnswer(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("open: %w", os.ErrDeadlineExceeded), true},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
		{context.Canceled, false},
		{errors.New("stream reset"), false},
		{io.EOF, false},
	} {
		if got := noAnswer(c.err); got != c.want {
			t.Errorf("noAnswer(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
