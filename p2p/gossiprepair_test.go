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
