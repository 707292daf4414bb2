package work

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// TestQuarantinedNodesChunksGoToOthers: the job state refuses every result of a quarantined
// node, so the chunks it holds go back to the pending work at once, when an audit quarantines
// it or at its next exchange, and that exchange tells it to drop them. Before, it kept them:
// it computed each to its end for nothing, and the range then lay orphaned until the repair
// pass noticed it.
func TestQuarantinedNodesChunksGoToOthers(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	setup := func(t *testing.T) (*leadership, quarantinedAudits, lease) {
		t.Helper()
		qa := quarantinedAudits{&fakeAudits{}, map[string]bool{}}
		co := NewCoordinator(CoordinatorConfig{Jobs: fakeJobs{"j1": {ID: "j1", Spec: spec}}, Audits: qa,
			Apply: qa.apply, ApplyGroup: qa.applyGroup, Logger: discardLogger()})
		c := co.newLeadership(context.Background(), 7, time.Second)
		c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; no reconcile
		c.jobs["j1"] = true
		if err := c.sched.AddJob("j1", spec, []compute.Range{{Start: 0, End: spec.TotalUnits()}}, true); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp := syncAt(ctx, t, c, "node-q", &syncRequest{Want: 1})
		if len(resp.Leases) != 1 {
			t.Fatalf("leased %+v, want one chunk", resp.Leases)
		}
		return c, qa, resp.Leases[0]
	}
	allPending := func(t *testing.T, c *leadership, l lease) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.sched.Holds(peer.ID("node-q").String(), l.ID) || c.sched.PendingUnits("j1") != spec.TotalUnits() {
			t.Fatalf("the quarantined node still holds its chunk %v (pending %d of %d units)", l.Range, c.sched.PendingUnits("j1"), spec.TotalUnits())
		}
	}
	t.Run("at its next exchange", func(t *testing.T) {
		c, qa, l := setup(t)
		qa.out[peer.ID("node-q").String()] = true // by an earlier leader, say
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp := syncAt(ctx, t, c, "node-q", &syncRequest{Leases: []uint64{l.ID}, Held: []held{{ID: l.ID, Term: l.Term, Chunk: l.Chunk}},
			Progress: []leaseProgress{{Lease: l.ID, Done: 1}}})
		if !slices.Contains(resp.Cancel, l.ID) {
			t.Fatalf("quarantined node not told to drop lease %d: cancel %v", l.ID, resp.Cancel)
		}
		allPending(t, c, l)
	})
	t.Run("when an audit quarantines it", func(t *testing.T) {
		c, _, l := setup(t)
		c.applyOutcome(compute.AuditOutcome{Quarantined: []string{peer.ID("node-q").String()}}, "node-b")
		allPending(t, c, l)
	})
}
