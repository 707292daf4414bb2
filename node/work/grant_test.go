package work

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

type fakeJobs map[string]compute.Job

func (f fakeJobs) Unfinished() []compute.UnfinishedJob { return nil }
func (f fakeJobs) Evictable(compute.Evict) bool        { return false }
func (f fakeJobs) Job(id string) (compute.Job, bool) {
	j, ok := f[id]
	return j, ok
}

// TestResultsOnlyForGrantedRanges: a member that hands in a result for a
// range leased to another node (or never leased) has it refused (acked, so
// it stops resending) and nothing is committed; the lease holder's result
// goes to the commit.
func TestResultsOnlyForGrantedRanges(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000, Seed: 1}}
	c := newTestLeadership(t, spec)
	a, b := peer.ID("node-a"), peer.ID("node-b")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, a, &syncRequest{Want: 1, Term: 7})
	if err != nil || len(resp.Leases) != 1 {
		t.Fatalf("lease to a: %+v, %v", resp, err)
	}
	l := resp.Leases[0]
	for _, forged := range []result{
		{Lease: l.ID, Term: 7, Chunk: compute.Chunk{Job: "j1", Range: compute.Range{Start: l.Start, End: l.End}}, Payload: []byte{1}},     // a's lease, this term
		{Lease: 99, Term: 6, Chunk: compute.Chunk{Job: "j1", Range: compute.Range{Start: l.Start, End: l.Start + 1}}, Payload: []byte{1}}, // a's range, "earlier term"
		{Lease: 99, Term: 7, Chunk: compute.Chunk{Job: "j1", Range: compute.Range{Start: 999_000, End: 1_000_000}}, Payload: []byte{1}},   // never leased to b
	} {
		resp, err = c.sync(ctx, b, &syncRequest{Term: 7, Results: []result{forged}})
		if err != nil {
			t.Fatalf("forged %+v: %v", forged, err)
		}
		if len(resp.Acked) != 1 || len(c.commits) != 0 {
			t.Fatalf("forged %+v: acked %v, %d commits queued; want refused", forged, resp.Acked, len(c.commits))
		}
	}
	// The holder's own result goes to the commit (answered here by hand).
	go func() {
		req := <-c.commits
		req.done <- commitRes{outcome: &compute.ResultsOutcome{}}
	}()
	resp, err = c.sync(ctx, a, &syncRequest{Term: 7, Leases: []uint64{l.ID}, Results: []result{{Lease: l.ID, Term: 7, Chunk: compute.Chunk{Job: "j1", Range: compute.Range{Start: l.Start, End: l.End}}, Payload: []byte{1}}}})
	if err != nil || len(resp.Acked) != 1 {
		t.Fatalf("holder's result: %+v, %v", resp, err)
	}
}

// newTestLeadership is a coordinator's term 7 that schedules one job, j1 with spec, all of it
// pending, and never reconciles (the job is added by hand); commits wait in its channel for the
// test to answer them.
func newTestLeadership(t *testing.T, spec compute.JobSpec) *leadership {
	t.Helper()
	c := NewCoordinator(CoordinatorConfig{Jobs: fakeJobs{"j1": {ID: "j1", Spec: spec}}}).newLeadership(context.Background(), 7, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; no reconcile: the job is added by hand
	c.jobs["j1"] = true
	if err := c.sched.AddJob("j1", spec, []compute.Range{{Start: 0, End: spec.TotalUnits()}}, true); err != nil {
		t.Fatal(err)
	}
	return c
}
