package p2p

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestDiscovery_FoundDialsBounded: an mDNS response is unauthenticated and
// may list any number of peer IDs, each with addresses of the sender's
// choosing. Each peer found was dialled at once, in a goroutine of its own,
// for up to dialTimeout: 300 of them at an address that never answers the
// handshake made 300 goroutines and 300 outbound connections in progress,
// and a stream of such responses as many as it liked. Discovery dials at
// most maxFoundDials found peers at once.
func TestDiscovery_FoundDialsBounded(t *testing.T) {
	h, _ := newTestHost(t, "g", nil)
	// A listener that never accepts: the kernel completes the TCP
	// handshake, libp2p's security handshake then waits for an answer.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mute := multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port))

	ctx, cancel := context.WithCancel(context.Background())
	cfg := fastDiscovery(DiscoveryConfig{})
	cfg.applyDefaults()
	d := &discovery{h: h, cfg: cfg, log: h.log, ctx: ctx, inflight: map[peer.ID]bool{}, joinWake: map[peer.ID]chan struct{}{}}
	defer func() {
		cancel()
		d.wg.Wait()
	}()
	for range 300 {
		d.found(peer.AddrInfo{ID: testPeerID(t), Addrs: []multiaddr.Multiaddr{mute}}, sourceDHT)
	}
	d.mu.Lock()
	n := len(d.inflight)
	d.mu.Unlock()
	if n > maxFoundDials {
		t.Errorf("%d found peers dialled at once, want at most %d", n, maxFoundDials)
	}
}

// testPeerID returns the peer ID of a fresh key.
func testPeerID(t testing.TB) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDiscovery_JoinBacksOffWhenDroppedAtOnce: a join peer that refuses
// this node (its key evicted, or the outsider places full) lets the
// handshake complete and closes the connection right after, so the dial
// succeeds. The join loop took that for a working connection: it reset its
// backoff and, on the disconnect, redialled at once, a handshake and an
// Info line per loop, as fast as the two machines could go. A connection
// dropped before it was stable backs off like a failed dial.
func TestDiscovery_JoinBacksOffWhenDroppedAtOnce(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	b, _ := newTestHost(t, "c", nil)
	a.SetAccess(func(p peer.ID) Access {
		if p == b.ID() {
			return AccessRefused
		}
		return AccessMember
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := fastDiscovery(DiscoveryConfig{Join: []peer.AddrInfo{addrInfo(t, a)}})
	start := time.Now()
	if err := b.StartDiscovery(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// Each attempt is refused once or twice (TCP and QUIC); with backoff
	// (50 ms doubling to 400 ms, jittered down to half) 20 refusals take
	// at least ten attempts, more than a second.
	waitFor(t, 30*time.Second, "20 refused connections", func() bool { return a.RefusedConns() >= 20 })
	if took := time.Since(start); took < time.Second {
		t.Fatalf("20 refused connections in %v: the join loop redials without backing off", took)
	}
}
