package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/localport"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// fastDiscovery is a DiscoveryConfig with test-sized intervals.
func fastDiscovery(cfg DiscoveryConfig) DiscoveryConfig {
	cfg.joinBackoffMin = 50 * time.Millisecond
	cfg.joinBackoffMax = 400 * time.Millisecond
	cfg.rendezvousMin = 100 * time.Millisecond
	cfg.rendezvousMax = 500 * time.Millisecond
	cfg.readvertise = time.Second
	cfg.mdnsDialDelay = 100 * time.Millisecond
	cfg.mdnsRetryMin = 50 * time.Millisecond
	cfg.mdnsRetryMax = 400 * time.Millisecond
	cfg.watchdogRecheck = time.Second
	return cfg
}

// freePorts picks a TCP and a UDP port on loopback (localport.Free), so a
// host can be started, stopped and started again on the same ports.
func freePorts(t *testing.T) []multiaddr.Multiaddr {
	t.Helper()
	port, err := localport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return []multiaddr.Multiaddr{
		multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)),
		multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port)),
	}
}

func connected(a, b *Host) bool {
	return a.Host().Network().Connectedness(b.ID()) == network.Connected
}

// TestDiscovery_JoinRedialsForever: B joins A before A is up, connects once
// A starts, and reconnects by itself after A restarts with the same key on
// the same ports.
func TestDiscovery_JoinRedialsForever(t *testing.T) {
	keyA := testKey(t)
	listenA := freePorts(t)
	idA, err := peer.IDFromPrivateKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	joinA := peer.AddrInfo{ID: idA, Addrs: listenA}

	b, _ := newTestHost(t, "c", nil)
	seenByB := newPeerSet()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{Join: []peer.AddrInfo{joinA}, OnPeer: seenByB.OnPeer})); err != nil {
		t.Fatal(err)
	}

	start := func() (*Host, *peerSet) {
		a, _ := newTestHost(t, "c", keyA, listenA...)
		seen := newPeerSet()
		if err := a.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{OnPeer: seen.OnPeer})); err != nil {
			t.Fatal(err)
		}
		return a, seen
	}

	// A comes up after B started joining it.
	a, seenByA := start()
	waitFor(t, 10*time.Second, "B to connect to A and report it", func() bool {
		return connected(b, a) && seenByB.n(idA) >= 1
	})
	waitFor(t, 10*time.Second, "A to report B (identify: same cluster)", func() bool {
		return seenByA.n(b.ID()) >= 1
	})

	// A restarts: same key, same ports.
	before := seenByB.n(idA)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B to notice A is gone", func() bool {
		return b.Host().Network().Connectedness(idA) != network.Connected
	})
	a, seenByA = start()
	waitFor(t, 15*time.Second, "B to reconnect to the restarted A", func() bool {
		return connected(b, a) && seenByB.n(idA) > before
	})
	waitFor(t, 10*time.Second, "the restarted A to report B", func() bool {
		return seenByA.n(b.ID()) >= 1
	})
	if seenByB.len() != 1 {
		t.Errorf("B reported %d peers, want only A", seenByB.len())
	}
}

// TestDiscovery_OnPeerIgnoresOtherClusters: a peer of another cluster that
// connects is not reported by identify.
func TestDiscovery_OnPeerIgnoresOtherClusters(t *testing.T) {
	a, _ := newTestHost(t, "one", nil)
	b, _ := newTestHost(t, "two", nil)
	c, _ := newTestHost(t, "one", nil)
	seen := newPeerSet()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{OnPeer: seen.OnPeer})); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{b, c} {
		if err := h.Host().Connect(ctx, addrInfo(t, a)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "A to report C (same cluster)", func() bool { return seen.n(c.ID()) > 0 })
	waitFor(t, 10*time.Second, "A to identify B", func() bool {
		v, err := a.Host().Peerstore().Get(b.ID(), "AgentVersion")
		return err == nil && v != nil
	})
	if seen.n(b.ID()) != 0 {
		t.Fatal("A reported B, a node of another cluster")
	}
}

// TestDiscovery_DHTRendezvous: B and C only join A; they find each other
// through the DHT rendezvous.
func TestDiscovery_DHTRendezvous(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, _ := newTestHost(t, "c", nil)
	if err := a.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{DHT: true})); err != nil {
		t.Fatal(err)
	}
	join := []peer.AddrInfo{addrInfo(t, a)}
	b, recB := newTestHost(t, "c", nil)
	c, recC := newTestHost(t, "c", nil)
	seenB, seenC := newPeerSet(), newPeerSet()
	if err := b.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{DHT: true, Join: join, OnPeer: seenB.OnPeer})); err != nil {
		t.Fatal(err)
	}
	if err := c.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{DHT: true, Join: join, OnPeer: seenC.OnPeer})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "B and C to find each other", func() bool {
		return seenB.n(c.ID()) > 0 && seenC.n(b.ID()) > 0
	})
	// At least one of them must have found the other through the
	// rendezvous itself (the other may have learnt of it when it dialled).
	waitFor(t, 30*time.Second, "a rendezvous lookup to return the other node", func() bool {
		return recB.has("peer found", "peer="+c.ID().String(), "source=dht") ||
			recC.has("peer found", "peer="+b.ID().String(), "source=dht")
	})
}

// TestDiscovery_StopsWithContext: cancelling StartDiscovery's context ends
// every discovery goroutine while the Host stays open, and OnPeer is not
// called afterwards.
func TestDiscovery_StopsWithContext(t *testing.T) {
	a, _ := newTestHost(t, "c", nil)
	b, _ := newTestHost(t, "c", nil)
	seen := newPeerSet()
	ctx, cancel := context.WithCancel(context.Background())
	err := b.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{
		MDNS: true, DHT: true, Join: []peer.AddrInfo{addrInfo(t, a)}, OnPeer: seen.OnPeer,
	}))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B to join A", func() bool { return seen.n(a.ID()) > 0 })
	cancel()
	waitFor(t, 10*time.Second, "discovery goroutines to end", func() bool { return ourGoroutines("watchAddrs") == "" })
	n := seen.n(a.ID())
	if err := b.Host().Network().ClosePeer(a.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A and B to see the disconnection", func() bool {
		return !connected(a, b) && !connected(b, a)
	})
	sub, err := b.Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := a.Host().Connect(context.Background(), addrInfo(t, b)); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for identified := false; !identified; {
		select {
		case e := <-sub.Out():
			identified = e.(event.EvtPeerIdentificationCompleted).Peer == a.ID()
		case <-timeout:
			t.Fatal("B never identified A again")
		}
	}
	if seen.n(a.ID()) != n {
		t.Fatal("OnPeer called after discovery stopped")
	}
	if err := b.StartDiscovery(context.Background(), DiscoveryConfig{}); err != ErrDiscoveryStarted {
		t.Fatalf("restart after stop: %v, want ErrDiscoveryStarted", err)
	}
}
