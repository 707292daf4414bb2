package work

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// TestSyncEndsWithItsTerm: an exchange that hands in results after its term ended (leadership
// lost while the exchange had already found the term, so its committer has stopped) fails with
// ErrNotLeader at once. The worker on the leader calls in-process with a context that lasts as
// long as the node: before, its exchange waited for ever for a commit nobody would make, and
// that node never handed in or took work again.
func TestSyncEndsWithItsTerm(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 24, Seed: 1}}
	termCtx, endTerm := context.WithCancel(context.Background())
	defer endTerm()
	co := NewCoordinator(CoordinatorConfig{Jobs: fakeJobs{"j1": {ID: "j1", Spec: spec}}, Logger: discardLogger()})
	c := co.newLeadership(termCtx, 7, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; no reconcile
	c.jobs["j1"] = true
	if err := c.sched.AddJob("j1", spec, []compute.Range{{Start: 0, End: spec.TotalUnits()}}, true); err != nil {
		t.Fatal(err)
	}
	committed := make(chan struct{})
	go func() { defer close(committed); c.committer(termCtx) }()

	const node = "node-a"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := syncAt(ctx, t, c, node, &syncRequest{Want: 1})
	if len(resp.Leases) != 1 {
		t.Fatalf("leased %d chunks, want 1", len(resp.Leases))
	}
	l := resp.Leases[0]

	endTerm() // leadership lost: the committer stops
	select {
	case <-committed:
	case <-ctx.Done():
		t.Fatal("the committer did not stop with its term")
	}

	// The worker on the leader: its context ends only with the node.
	workerCtx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	errc := make(chan error, 1)
	go func() {
		_, err := c.sync(workerCtx, peer.ID(node), &syncRequest{Term: c.term,
			Results: []result{{Lease: l.ID, Term: l.Term, Chunk: l.Chunk, Seconds: 1}}})
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, consensus.ErrNotLeader) {
			t.Fatalf("exchange after the term ended: %v, want ErrNotLeader", err)
		}
	case <-ctx.Done():
		t.Fatal("the exchange still waits for a commit of a term that ended")
	}
}
