package work

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// TestRangesAheadNotLeasedWhileTheyCommit: a paused worker hands in the prefix of its chunk and
// a range finished ahead of it. While their commit is under way, another node's exchange is
// leased only work outside them: before, the range ahead was pending again until its commit
// returned, the other node was leased a chunk reaching into it, and that chunk, left only partly
// inside once the commit returned, ran on for a result refused as an overlap, its range then
// orphaned until the repair pass.
func TestRangesAheadNotLeasedWhileTheyCommit(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	c := newTestLeadership(t, spec) // no committer: this test answers the commit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leased := syncAt(ctx, t, c, "node-a", &syncRequest{Want: 1}).Leases
	if len(leased) != 1 {
		t.Fatalf("node a leased %v, want one chunk", leased)
	}
	l := leased[0]
	q := l.Range.Len() / 4
	prefix := compute.Range{Start: l.Start, End: l.Start + q}
	ahead := compute.Range{Start: l.Start + 2*q, End: l.Start + 3*q}
	handIn := func(r compute.Range) result {
		return result{Lease: l.ID, Term: l.Term, Chunk: compute.Chunk{Job: l.Job, Range: r}, Seconds: 1, Payload: []byte{1}}
	}
	var other []lease
	resp := exchangeHeldAtCommit(ctx, t, c, "node-a", &syncRequest{Term: c.term, Paused: true, Results: []result{handIn(prefix), handIn(ahead)}},
		func() { other = syncAt(ctx, t, c, "node-b", &syncRequest{Want: 1}).Leases }) // while they commit, node b asks for work
	if len(resp.Acked) != 2 {
		t.Fatalf("paused worker's exchange acked %v, want both results", resp.Acked)
	}
	for _, o := range other {
		if o.Range.Overlaps(ahead) || o.Range.Overlaps(prefix) {
			t.Fatalf("node b leased %v while %v and %v were being committed", o.Range, prefix, ahead)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sched.Open(l.Job, ahead) || c.sched.Open(l.Job, prefix) {
		t.Fatalf("committed ranges %v, %v still pending or leased", prefix, ahead)
	}
}

// TestRangeAheadWithoutPrefixNotLeasedWhileItCommits: a pause that froze the child before its
// first block was done hands in only a range finished ahead of it (no prefix: every worker but
// the first had finished its block, as on a machine of many cores). The lease goes back whole,
// and while that range's commit is under way it must not be leased again: it was, to the next
// node that asked, which computed it for nothing until the commit returned and cancelled it.
func TestRangeAheadWithoutPrefixNotLeasedWhileItCommits(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	c := newTestLeadership(t, spec) // no committer: this test answers the commit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leased := syncAt(ctx, t, c, "node-a", &syncRequest{Want: 1}).Leases
	if len(leased) != 1 {
		t.Fatalf("node a leased %v, want one chunk", leased)
	}
	l := leased[0]
	q := l.Range.Len() / 4
	ahead := compute.Range{Start: l.Start + q, End: l.Start + 2*q}
	var other []lease
	resp := exchangeHeldAtCommit(ctx, t, c, "node-a", &syncRequest{Term: c.term, Paused: true, Results: []result{
		{Lease: l.ID, Term: l.Term, Chunk: compute.Chunk{Job: l.Job, Range: ahead}, Seconds: 1, Payload: []byte{1}}}},
		func() { other = syncAt(ctx, t, c, "node-b", &syncRequest{Want: 1}).Leases })
	if len(resp.Acked) != 1 {
		t.Fatalf("paused worker's exchange acked %v, want its result", resp.Acked)
	}
	if len(other) == 0 {
		t.Fatal("node b was leased nothing: the rest of the chunk should have gone to it")
	}
	for _, o := range other {
		if o.Range.Overlaps(ahead) {
			t.Fatalf("node b leased %v while %v was being committed", o.Range, ahead)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sched.Open(l.Job, ahead) {
		t.Fatalf("committed range %v still pending or leased", ahead)
	}
	if before := (compute.Range{Start: l.Start, End: ahead.Start}); !c.sched.Open(l.Job, before) {
		t.Fatalf("the range %v before it is neither pending nor leased", before)
	}
}

// exchangeHeldAtCommit runs node's exchange req with c and holds the commit of its results: while
// the commit waits, during runs (another node's exchange, the coordinator's ticks); then every
// item is accepted, and the exchange's answer returned (a failed exchange fails the test).
func exchangeHeldAtCommit(ctx context.Context, t *testing.T, c *leadership, node string, req *syncRequest, during func()) *syncResponse {
	t.Helper()
	type answer struct {
		resp *syncResponse
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := c.sync(ctx, peer.ID(node), req)
		answered <- answer{resp, err}
	}()
	var commit *commitReq
	select {
	case commit = <-c.commits:
	case <-ctx.Done():
		t.Fatalf("%s's results never went to the commit", node)
	}
	during()
	commit.done <- commitRes{outcome: &compute.ResultsOutcome{Accepted: len(commit.items)}}
	select {
	case a := <-answered:
		if a.err != nil {
			t.Fatalf("%s's exchange: %v", node, a.err)
		}
		return a.resp
	case <-ctx.Done():
		t.Fatalf("%s's exchange never returned", node)
	}
	return nil
}
