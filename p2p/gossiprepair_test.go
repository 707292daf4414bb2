package p2p

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGossip_PeerRestartedOftenIsHeard: a peer that restarts (same
// identity) while the survivors still hold a connection to its previous
// process, six times in a row: gossipsub respawns its writer to such a peer
// with a backoff and gives up after four times in ten minutes, and it
// forgets the new process's subscriptions with the old stream: either way
// the survivor stops sending to a peer whose connection stays up. Each
// incarnation must hear the survivor and be heard by it (the host
// reconnects such a peer: gossiprepair.go), also when the survivor's
// peerstore has lost the peer's addresses.
func TestGossip_PeerRestartedOftenIsHeard(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	member := func(peer.ID) Access { return AccessMember }
	a, _ := newTestHost(t, "g", nil)
	a.SetAccess(member)
	ta, err := a.Topic("announce/1")
	if err != nil {
		t.Fatal(err)
	}
	aBox := new(inbox)
	if err := ta.Subscribe(ctx, aBox.add); err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	var prev *Host
	for round := range 6 {
		b, _ := newTestHost(t, "g", key)
		b.SetAccess(member)
		tb, err := b.Topic("announce/1")
		if err != nil {
			t.Fatal(err)
		}
		bBox := new(inbox)
		if err := tb.Subscribe(ctx, bBox.add); err != nil {
			t.Fatal(err)
		}
		connect(t, b, a)
		if prev != nil {
			_ = prev.Close() // the old process goes while the new one is connected
			// The old process's last identify push (listen addresses: none) can
			// reach A after the new process's identify and replace every address
			// A had for that identity: the repair must redial without them.
			a.Host().Peerstore().ClearAddrs(b.ID())
		}
		prev = b
		start := time.Now()
		mark := fmt.Sprintf("round %d", round)
		is := func(_ peer.ID, m string) bool { return m == mark }
		waitFor(t, 30*time.Second, mark+": both hear each other", func() bool {
			_ = ta.Publish(ctx, []byte(mark))
			_ = tb.Publish(ctx, []byte(mark))
			return aBox.count(is) > 0 && bBox.count(is) > 0
		})
		t.Logf("%s: heard both ways after %v", mark, time.Since(start).Round(time.Millisecond))
	}
}

// TestGossip_MovedPeerIsHeardAfterTheProbe: a peer moved (its old connection
// leads nowhere) and connected again from its new address. When the probe
// closes the old connection, gossipsub drops the streams it had on it and
// forgets the peer's subscriptions, although the peer is still connected
// (over the new connection): the survivor sends it nothing more until gossip
// repair reconnects it. The probe asks the repair to look at that peer at
// once; the periodic checks are an hour apart here, so only that request can
// bring the two to hear each other again. Before, a moved voter was heard
// again only after the next two periodic checks, 5 to 10 s after the probe.
func TestGossip_MovedPeerIsHeardAfterTheProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	member := func(peer.ID) Access { return AccessMember }
	subscribe := func(h *Host) (*Topic, *inbox) {
		t.Helper()
		h.SetAccess(member)
		h.repairEvery = time.Hour
		tp, err := h.Topic("announce/1")
		if err != nil {
			t.Fatal(err)
		}
		box := new(inbox)
		if err := tp.Subscribe(ctx, box.add); err != nil {
			t.Fatal(err)
		}
		return tp, box
	}
	hear := func(what string, ta, tb *Topic, aBox, bBox *inbox) {
		t.Helper()
		is := func(_ peer.ID, m string) bool { return m == what }
		waitFor(t, 30*time.Second, what+": both hear each other", func() bool {
			_ = ta.Publish(ctx, []byte(what))
			_ = tb.Publish(ctx, []byte(what))
			return aBox.count(is) > 0 && bBox.count(is) > 0
		})
	}
	a, _ := newTestHost(t, "g", nil)
	ta, aBox := subscribe(a)
	keyB := testKey(t)
	b, _ := newTestHost(t, "g", keyB)
	tb, bBox := subscribe(b)
	proxy := connectThroughProxy(t, b, a)
	hear("before the move", ta, tb, aBox, bBox)

	proxy.frozen.Store(true) // B's old address is gone
	moved, _ := newTestHost(t, "g", keyB)
	tm, mBox := subscribe(moved)
	connect(t, moved, a)
	waitOldConnClosed(t, a, b.ID())
	hear("after the move", ta, tm, aBox, mBox)
}
