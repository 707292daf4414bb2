package work

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// gossipLimit is p2p.MaxGossipMessage (work must not import p2p): the activity topic drops a
// larger message at the publisher, so no node but the leader would see the activity at all.
const gossipLimit = 64 << 10

// TestActivityFitsGossip: the activity of a large cluster (150 workers with two chunks each,
// MaxActivityLeases leases in flight, node IDs as long as real ones) still fits one gossip
// message. Bounded by the count of leases only, it came to about 75 KiB: Publish refused it
// (ErrGossipTooLarge, logged at debug), and the other nodes showed no leases, no rates and a
// cluster clock that no longer followed the leader's.
func TestActivityFitsGossip(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1e15, Seed: 1}}
	c := newTestLeadership(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leases := 0
	for i := range 150 {
		// A real peer ID's length: 52 characters.
		node := peer.ID(fmt.Sprintf("12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd%04d", i))
		resp, err := c.sync(ctx, node, &syncRequest{Want: 2, Term: 7, Kernel: "avx512", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		leases += len(resp.Leases)
	}
	if leases < MaxActivityLeases {
		t.Fatalf("%d leases out, want at least %d for the test to mean anything", leases, MaxActivityLeases)
	}
	a := c.snapshotActivity(time.Now())
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > gossipLimit {
		t.Fatalf("activity of %d leases and %d nodes is %d bytes, over the gossip limit of %d", len(a.Leases), len(a.Nodes), len(b), gossipLimit)
	}
	if len(a.Nodes) != 150 || len(a.Leases) == 0 {
		t.Fatalf("activity shows %d nodes and %d leases, want all 150 nodes and some leases", len(a.Nodes), len(a.Leases))
	}
	t.Logf("%d of %d leases, %d nodes: %d bytes", len(a.Leases), leases, len(a.Nodes), len(b))
}
