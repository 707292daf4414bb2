package work

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// TestSlowCommitIsNoSilence: a worker whose exchange waits on a slow commit (a leader writing
// to a slow SD card, a big batch) is not silent: it is talking to the coordinator. The
// coordinator counted a worker's silence from the start of its last exchange, so one whose
// commit took longer than workerSilence was declared gone while it waited: its leases went
// back to the pending work, and the same exchange, once the commit returned, told it to cancel
// them, so the chunk it was computing (and the ones queued) were thrown away.
func TestSlowCommitIsNoSilence(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	c := newTestLeadership(t, spec) // no committer: this test answers the commit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leased := syncAt(ctx, t, c, "node-a", &syncRequest{Want: 2}).Leases
	if len(leased) != 2 {
		t.Fatalf("node a leased %v, want two chunks", leased)
	}
	first, running := leased[0], leased[1]
	// The first chunk's result, the second chunk in hand; the commit takes longer than
	// workerSilence: the coordinator's ticks go on meanwhile.
	resp := exchangeHeldAtCommit(ctx, t, c, "node-a", &syncRequest{Term: c.term, Want: 1, Leases: []uint64{running.ID},
		Results: []result{{Lease: first.ID, Term: first.Term, Chunk: first.Chunk, Seconds: 1, Payload: []byte{1}}}},
		func() {
			c.tick(time.Now().Add(workerSilence + time.Second))
			c.tick(time.Now().Add(2*workerSilence + time.Second))
		})
	if slices.Contains(resp.Cancel, running.ID) {
		t.Fatalf("the chunk in hand (lease %d) was cancelled after a slow commit", running.ID)
	}
	c.mu.Lock()
	_, seen := c.lastSeen[peer.ID("node-a").String()]
	held := c.sched.Holds(peer.ID("node-a").String(), running.ID)
	c.mu.Unlock()
	if !seen || !held {
		t.Fatalf("node a declared gone (%v) or no longer holding lease %d (%v) after its exchange waited on the commit", !seen, running.ID, !held)
	}
}
