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
