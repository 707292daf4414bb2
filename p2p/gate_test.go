package p2p

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestGateRefusesRevokedKeys: a key the access function refuses is cut off
// at once (Refuse) and cannot connect again, over TCP and over QUIC, in
// either direction; members-only protocols reset an outsider's streams.
func TestGateRefusesRevokedKeys(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			listen := multiaddr.StringCast("/ip4/127.0.0.1/tcp/0")
			if tr == "quic" {
				listen = multiaddr.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")
			}
			a, _ := newTestHost(t, "gate", testKey(t), listen)
			b, _ := newTestHost(t, "gate", testKey(t), listen)
			var revoked atomic.Bool
			a.SetAccess(func(p peer.ID) Access {
				if p == b.ID() && revoked.Load() {
					return AccessRefused
				}
				return AccessMember
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := b.Host().Connect(ctx, addrInfo(t, a)); err != nil {
				t.Fatalf("member connect: %v", err)
			}
			revoked.Store(true)
			start := time.Now()
			a.Refuse(b.ID())
			waitFor(t, 2*time.Second, "the revoked key's connections closed", func() bool {
				return len(a.Host().Network().ConnsToPeer(b.ID())) == 0
			})
			t.Logf("%s: revoked → connections closed in %v", tr, time.Since(start).Round(time.Microsecond))
			b.Host().Network().ClosePeer(a.ID())
			b.Host().Peerstore().RemovePeer(a.ID())
			if err := b.Host().Connect(ctx, addrInfo(t, a)); err == nil {
				// The dialer may see the handshake succeed before the
				// listener's gater closes the connection: it must not last.
				waitFor(t, 2*time.Second, "the refused connection closed", func() bool {
					return len(a.Host().Network().ConnsToPeer(b.ID())) == 0
				})
			}
			if err := a.Host().Connect(ctx, addrInfo(t, b)); err == nil {
				t.Fatal("dialing a revoked key succeeded")
			}
			if a.RefusedConns() == 0 {
				t.Fatal("the gater counted no refusal")
			}
		})
	}
}

// TestGateCapsOutsiders: beyond the cap, a new outsider's inbound
// connection is refused (TCP and QUIC alike: the gater runs after either
// handshake); a connected outsider keeps its place, members are never
// counted nor refused, and a place frees when an outsider leaves.
func TestGateCapsOutsiders(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			listen := multiaddr.StringCast("/ip4/127.0.0.1/tcp/0")
			if tr == "quic" {
				listen = multiaddr.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")
			}
			a, _ := newTestHost(t, "gate", testKey(t), listen)
			a.gate.maxOutsiders = 2
			var hs []*Host
			for range 4 {
				h, _ := newTestHost(t, "gate", testKey(t), listen)
				hs = append(hs, h)
			}
			member := hs[3].ID()
			a.SetAccess(func(p peer.ID) Access {
				if p == member {
					return AccessMember
				}
				return AccessOutsider
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			connected := func(h *Host) bool { return len(a.Host().Network().ConnsToPeer(h.ID())) > 0 }
			for _, h := range hs[:2] {
				if err := h.Host().Connect(ctx, addrInfo(t, a)); err != nil {
					t.Fatalf("outsider within the cap: %v", err)
				}
				waitFor(t, 5*time.Second, "outsider connected", func() bool { return connected(h) })
			}
			before := a.RefusedConns()
			_ = hs[2].Host().Connect(ctx, addrInfo(t, a)) // the dialer may see the handshake succeed
			waitFor(t, 5*time.Second, "the third outsider refused", func() bool {
				return a.RefusedConns() > before && !connected(hs[2])
			})
			if err := hs[3].Host().Connect(ctx, addrInfo(t, a)); err != nil {
				t.Fatalf("a member beyond the outsider cap: %v", err)
			}
			waitFor(t, 5*time.Second, "member connected", func() bool { return connected(hs[3]) })
			// One outsider leaves: the third one gets in.
			_ = hs[0].Host().Network().ClosePeer(a.ID())
			waitFor(t, 5*time.Second, "outsider gone", func() bool { return !connected(hs[0]) })
			hs[2].Host().Network().ClosePeer(a.ID())
			hs[2].Host().Peerstore().RemovePeer(a.ID())
			waitFor(t, 10*time.Second, "the third outsider admitted once a place is free", func() bool {
				_ = hs[2].Host().Connect(ctx, addrInfo(t, a))
				return connected(hs[2])
			})
		})
	}
}

// TestGateOutsiderCapCountsInboundOnly: the cap is on outsiders holding
// inbound connections (strangers asking to join). Peers this node dialled
// itself (DHT peers of other clusters, a join peer not yet admitted) were
// counted too, so a node with that many outbound connections to
// non-members refused every stranger's connection.
func TestGateOutsiderCapCountsInboundOnly(t *testing.T) {
	a, _ := newTestHost(t, "gate", nil)
	a.gate.maxOutsiders = 2
	a.SetAccess(func(peer.ID) Access { return AccessOutsider })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		h, _ := newTestHost(t, "gate", nil)
		if err := a.Host().Connect(ctx, addrInfo(t, h)); err != nil {
			t.Fatalf("dial an outsider: %v", err)
		}
	}
	stranger, _ := newTestHost(t, "gate", nil)
	before := a.RefusedConns()
	if err := stranger.Host().Connect(ctx, addrInfo(t, a)); err != nil {
		t.Fatalf("a stranger's connection with no outsider connected inbound: %v", err)
	}
	waitFor(t, 5*time.Second, "the stranger connected or refused", func() bool {
		return a.RefusedConns() > before || len(a.Host().Network().ConnsToPeer(stranger.ID())) > 0
	})
	if a.RefusedConns() > before {
		t.Fatal("a stranger was refused: outsiders this node dialled took the inbound places")
	}
}
