package p2p

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"
)

// Connections left behind by a moved address.
//
// A machine whose address changes under a running node (a new DHCP lease, a
// laptop moved to another network) leaves connections that lead nowhere: on
// this side they are bound to an address the machine no longer has, on a
// peer's side they lead to it. Neither end is told. TCP retransmits for
// minutes, and yamux and QUIC give up only after some 30 s of silence;
// meanwhile libp2p opens new streams on the connection to a peer that has the
// most streams, which is the stale one, full of unanswered RPCs. A voter that
// moved was cut off from its leader for 22 s and shown offline for 35 s
// (scripts/netns-cluster-test, step g).
//
// Two checks end that early:
//
//  1. A Host watches its machine's addresses (addrwatch_linux.go: the kernel
//     tells at once; addrwatch_other.go: a poll). When an address goes, each
//     connection whose local end is that address is closed at once, and each
//     whose local end is a wildcard (a QUIC socket) is probed. Whoever needs
//     a closed connection dials again (consensus's leader watch, gossip
//     repair, discovery), now from an address the machine has.
//  2. When a peer connects from an address none of its open connections to
//     this node comes from, those older connections are probed: the peer
//     may have moved.
//
// A probe opens a stream on that one connection and negotiates the ping
// protocol, a round trip, within probeTimeout; a connection that does not
// answer in time is closed (a refusal or a reset is an answer: the peer is
// there). A live one costs a stream opened and reset. Probes are rare (an
// address change, a second address of one peer), never periodic. Gossip
// repair looks at once at a peer one of whose connections closed while
// another stays open (gossiprepair.go): gossipsub forgets the peer's
// subscriptions with the streams it had on the closed one.

// probeTimeout bounds a probe's round trip: far above a LAN's, below the 30 s
// after which yamux and QUIC would close a dead connection themselves.
const probeTimeout = 3 * time.Second

// movedWatch probes a peer's older connections when it connects from a new
// address (check 2 above), and tells gossip repair of every closed
// connection (askRepair).
type movedWatch struct{ h *Host }

func (w movedWatch) Listen(network.Network, ma.Multiaddr)      {}
func (w movedWatch) ListenClose(network.Network, ma.Multiaddr) {}
func (w movedWatch) Disconnected(_ network.Network, c network.Conn) {
	w.h.askRepair(c.RemotePeer())
}
func (w movedWatch) Connected(n network.Network, c network.Conn) {
	ip := connIP(c.RemoteMultiaddr())
	if ip == nil {
		return
	}
	// Not here: the swarm's notifications must not block, nor call back into it.
	w.h.goTracked(func() {
		var older []network.Conn
		for _, o := range n.ConnsToPeer(c.RemotePeer()) {
			if o != c && !o.IsClosed() && !ip.Equal(connIP(o.RemoteMultiaddr())) {
				older = append(older, o)
			}
		}
		if len(older) > 0 {
			w.h.probeAll(older, "the peer connected from "+ip.String())
		}
	})
}

var _ network.Notifiee = movedWatch{}

// addrGone is called with each address the machine no longer has (check 1).
func (h *Host) addrGone(ip net.IP) {
	var probe []network.Conn
	for _, c := range h.h.Network().Conns() {
		local := connIP(c.LocalMultiaddr())
		switch {
		case local == nil:
		case local.Equal(ip):
			h.log.Info("closing a connection from an address this machine no longer has",
				"peer", c.RemotePeer(), "local", c.LocalMultiaddr(), "remote", c.RemoteMultiaddr())
			_ = c.Close()
		case local.IsUnspecified():
			probe = append(probe, c)
		}
	}
	if len(probe) > 0 {
		h.goTracked(func() { h.probeAll(probe, "this machine's address "+ip.String()+" went") })
	}
}

// probeAll probes the connections at once and closes those that do not
// answer within probeTimeout.
func (h *Host) probeAll(conns []network.Conn, why string) {
	done := make(chan struct{}, len(conns))
	for _, c := range conns {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := h.probe(c); noAnswer(err) && h.ctx.Err() == nil && !c.IsClosed() {
				h.log.Info("closing a connection that no longer answers", "why", why,
					"peer", c.RemotePeer(), "local", c.LocalMultiaddr(), "remote", c.RemoteMultiaddr(), "err", err)
				_ = c.Close()
			}
		}()
	}
	for range conns {
		<-done
	}
}

// probe opens a stream on c and negotiates the ping protocol on it: a round
// trip on that connection, whatever other connections to the peer there are.
func (h *Host) probe(c network.Conn) error {
	ctx, cancel := context.WithTimeout(h.ctx, probeTimeout)
	defer cancel()
	s, err := c.NewStream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Reset() }()
	if err := s.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	return msmux.SelectProtoOrFail(ping.ID, s)
}

// noAnswer reports whether a probe's error says the connection did not
// answer in time. Any other error (a stream the peer refused or reset) came
// from a peer that answered: its connection lives.
func noAnswer(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout())
}

// connIP is the IP address of a connection's end, or nil if it has none.
func connIP(a ma.Multiaddr) net.IP {
	if a == nil {
		return nil
	}
	ip, err := manet.ToIP(a)
	if err != nil {
		return nil
	}
	return ip
}
