package work

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestCommitter_BatchesInFlight: the committer keeps up to commitsInFlight batches in raft at
// once (no more), batches the requests that wait meanwhile, and answers each request with its
// own part of its batch's outcome.
func TestCommitter_BatchesInFlight(t *testing.T) {
	var mu sync.Mutex
	inFlight, most, calls := 0, 0, 0
	release := make(chan struct{})
	c := &leadership{log: discardLogger(), ctx: context.Background(), commits: make(chan *commitReq, 1024), cfg: &CoordinatorConfig{
		Apply: func(ctx context.Context, cmd any) (json.RawMessage, error) {
			r := cmd.(compute.Results)
			mu.Lock()
			inFlight++
			calls++
			most = max(most, inFlight)
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
			// Reject every result of job "bad": each request must see only its own.
			out := compute.ResultsOutcome{}
			for i, it := range r.Items {
				if it.Job == "bad" {
					out.Rejected = append(out.Rejected, compute.Rejection{Index: i, Reason: "test"})
				} else {
					out.Accepted++
				}
			}
			return json.Marshal(out)
		}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); c.committer(ctx) }()
	const n = 40
	type answer struct {
		i   int
		out *compute.ResultsOutcome
		err error
	}
	answers := make(chan answer, n)
	send := func(i int) {
		job := "good"
		if i%3 == 0 {
			job = "bad"
		}
		items := []compute.ChunkResult{
			{Chunk: compute.Chunk{Job: "good", Range: compute.Range{Start: uint64(2 * i), End: uint64(2*i + 1)}}},
			{Chunk: compute.Chunk{Job: job, Range: compute.Range{Start: uint64(2*i + 1), End: uint64(2*i + 2)}}},
		}
		go func() {
			out, err := c.commit(ctx, items)
			answers <- answer{i, out, err}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			<-time.After(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	// One request per batch until commitsInFlight batches are held in Apply; the others then
	// wait for the committer, and go in one batch once the first ones are let go.
	for i := range commitsInFlight {
		send(i)
		waitFor(fmt.Sprintf("%d batches are in flight", i+1), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return inFlight == i+1
		})
	}
	for i := commitsInFlight; i < n; i++ {
		send(i)
	}
	waitFor("the other requests wait", func() bool { return len(c.commits) == n-commitsInFlight })
	close(release)
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		wantRejected := 0
		if a.i%3 == 0 {
			wantRejected = 1
		}
		if a.out.Accepted != 2-wantRejected || len(a.out.Rejected) != wantRejected || wantRejected == 1 && a.out.Rejected[0].Index != 1 {
			t.Fatalf("request %d: outcome %+v, want %d rejected (its second item)", a.i, a.out, wantRejected)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most > commitsInFlight {
		t.Fatalf("%d batches in flight at once, at most %d", most, commitsInFlight)
	}
	if calls > commitsInFlight+1 {
		t.Fatalf("%d raft applies for %d requests: the %d that waited were not committed as one batch", calls, n, n-commitsInFlight)
	}
	cancel()
	<-done
}
