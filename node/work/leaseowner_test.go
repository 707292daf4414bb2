package work

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// TestLeaseReportsOnlyFromTheirHolder: lease IDs are sequential, so a worker can name any
// other node's lease; a failed lease, progress, or a result's lease that names a lease of
// another node leaves that lease as it was (it is neither requeued nor stretched), while the
// holder's own reports still count.
func TestLeaseReportsOnlyFromTheirHolder(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	a, b := peer.ID("node-a"), peer.ID("node-b")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Both leases were issued a minute ago, so that any progress report moves a deadline.
	setup := func(t *testing.T) (*leadership, compute.Lease, compute.Lease) {
		t.Helper()
		c := newTestLeadership(t, spec)
		c.mu.Lock()
		defer c.mu.Unlock()
		var ls [2]compute.Lease
		for i, n := range []peer.ID{a, b} {
			l, ok := c.sched.Lease(n.String(), time.Now().Add(-time.Minute))
			if !ok {
				t.Fatalf("no lease for %s", n)
			}
			c.grantLocked(n.String(), l.Job, l.Range)
			ls[i] = l
		}
		return c, ls[0], ls[1]
	}
	deadline := func(c *leadership, id uint64) time.Time {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, l := range c.sched.Leases() {
			if l.ID == id {
				return l.Deadline
			}
		}
		return time.Time{}
	}
	holds := func(c *leadership, n peer.ID, id uint64) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sched.Holds(n.String(), id)
	}

	t.Run("failed", func(t *testing.T) {
		c, la, lb := setup(t)
		if _, err := c.sync(ctx, b, &syncRequest{Term: 7, Leases: []uint64{lb.ID}, Failed: []uint64{la.ID}}); err != nil {
			t.Fatal(err)
		}
		if !holds(c, a, la.ID) {
			t.Fatalf("b's report of a's lease %d as failed requeued it", la.ID)
		}
		if _, err := c.sync(ctx, b, &syncRequest{Term: 7, Failed: []uint64{lb.ID}}); err != nil || holds(c, b, lb.ID) {
			t.Fatalf("b's own failed lease %d: still held (%v)", lb.ID, err)
		}
	})
	t.Run("progress", func(t *testing.T) {
		c, la, lb := setup(t)
		was := deadline(c, la.ID)
		if _, err := c.sync(ctx, b, &syncRequest{Term: 7, Leases: []uint64{lb.ID}, Progress: []leaseProgress{{Lease: la.ID, Done: 1}}}); err != nil {
			t.Fatal(err)
		}
		if got := deadline(c, la.ID); !got.Equal(was) {
			t.Fatalf("b's progress on a's lease %d moved its deadline from %v to %v", la.ID, was, got)
		}
		wasB := deadline(c, lb.ID)
		if _, err := c.sync(ctx, b, &syncRequest{Term: 7, Leases: []uint64{lb.ID}, Progress: []leaseProgress{{Lease: lb.ID, Done: 1}}}); err != nil {
			t.Fatal(err)
		}
		if got := deadline(c, lb.ID); !got.After(wasB) {
			t.Fatalf("b's progress on its own lease %d left its deadline at %v", lb.ID, got)
		}
	})
	t.Run("result", func(t *testing.T) {
		c, la, lb := setup(t)
		go func() {
			req := <-c.commits
			req.done <- commitRes{outcome: &compute.ResultsOutcome{}}
		}()
		// b's own range, handed in under a's lease: the result goes to the commit (b's range),
		// a's lease stays a's.
		forged := result{Lease: la.ID, Term: 7, Chunk: lb.Chunk, Payload: []byte{1}}
		resp, err := c.sync(ctx, b, &syncRequest{Term: 7, Leases: []uint64{lb.ID}, Results: []result{forged}})
		if err != nil || len(resp.Acked) != 1 {
			t.Fatalf("b's result: %+v, %v", resp, err)
		}
		if !holds(c, a, la.ID) {
			t.Fatalf("b's result naming a's lease %d completed it", la.ID)
		}
	})
}

// TestStaleTermReportsIgnored: a worker's first exchange with a new leader reports under the
// term it last heard, and lease IDs restart with each term. A chunk that failed under the old
// leader, reported with its old ID, must not fail the lease of that number here: the chunk the
// node holds, adopted in this very exchange as lease 1, stays leased to it rather than going
// back to the pending work (to be computed twice).
func TestStaleTermReportsIgnored(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	c := newTestLeadership(t, spec) // term 7
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	node := peer.ID("node-a")
	inHand := compute.Chunk{Job: "j1", Range: compute.Range{Start: 1 << 20, End: 2 << 20}}
	resp, err := c.sync(ctx, node, &syncRequest{
		Term:   6,
		Held:   []held{{ID: 2, Term: 6, Chunk: inHand}},
		Failed: []uint64{1}, // old lease 1 failed before the leader changed
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Adopted) != 1 || resp.Adopted[0].New != 1 {
		t.Fatalf("adopted %+v, want the chunk in hand as lease 1", resp.Adopted)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sched.Holds(node.String(), 1) {
		t.Fatal("the old term's failed lease 1 failed this term's lease 1, the adopted chunk in hand")
	}
	if pending := c.sched.PendingUnits("j1"); pending != spec.TotalUnits()-inHand.Range.Len() {
		t.Fatalf("%d units pending, want all but the adopted chunk %v: it went back to the pending work", pending, inHand.Range)
	}
}
