package work

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
)

// prefixRunner computes until it is stopped, and then hands in the first half of its chunk.
type prefixRunner struct{ started chan struct{} }

func (r prefixRunner) Run(ctx context.Context, c child.Chunk, _ func(uint64)) (child.Result, error) {
	close(r.started)
	<-ctx.Done()
	done := compute.Range{Start: c.Range.Start, End: c.Range.Start + c.Range.Len()/2}
	payload, err := refPayload(c.Spec, done)
	return child.Result{ID: c.ID, Done: done, Payload: payload, ComputeSeconds: 1}, err
}

func (prefixRunner) StopTask() {}

// TestWorker_StopsWithoutTakingWork: a worker that stops hands in the prefix of its chunk and
// gives back the chunk it had queued, and asks for no work on the way out. Before, its last
// exchanges asked for chunks as any other, and the coordinator leased them to a node that would
// never run them: they, and the queued one, waited for the node's silence to be noticed.
func TestWorker_StopsWithoutTakingWork(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 24, Seed: 1}}
	chunk := func(i uint64) compute.Chunk {
		return compute.Chunk{Job: "j1", Range: compute.Range{Start: i << 20, End: (i + 1) << 20}}
	}
	var mu sync.Mutex
	var reqs []syncRequest
	first := true
	w := prefixWorker(func(_ context.Context, _ peer.ID, req, resp any) error {
		r := *req.(*syncRequest)
		mu.Lock()
		defer mu.Unlock()
		reqs = append(reqs, r)
		out := resp.(*syncResponse)
		*out = syncResponse{Term: 1}
		for _, res := range r.Results {
			out.Acked = append(out.Acked, res.Chunk)
		}
		if first {
			first = false
			out.Leases = []lease{{ID: 1, Term: 1, Chunk: chunk(0), Spec: spec}, {ID: 2, Term: 1, Chunk: chunk(1), Spec: spec}}
		}
		return nil
	})
	stopMidChunk(t, w)
	mu.Lock()
	defer mu.Unlock()
	var handedIn bool
	for _, r := range reqs[1:] {
		for _, res := range r.Results {
			handedIn = handedIn || res.Lease == 1 && res.Start == chunk(0).Start
		}
		if r.Results != nil && r.Want != 0 {
			t.Fatalf("an exchange on the way out asked for %d chunks", r.Want)
		}
	}
	last := reqs[len(reqs)-1]
	if !handedIn || !slices.Contains(last.Failed, 2) || !last.Paused || last.Want != 0 {
		t.Fatalf("last exchange %+v: want the prefix of lease 1 handed in, queued lease 2 given back, nothing leased", last)
	}
}

// TestWorker_StopHandsInThroughALeaderChange: a stopping worker whose last exchanges are answered
// "not the leader" (a stopping leader hands leadership over first, and the new leader's
// coordinator starts a few milliseconds after its election) tries again within finalFlush. It
// gave up at the first answer, and the prefix of its chunk was computed again elsewhere.
func TestWorker_StopHandsInThroughALeaderChange(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 24, Seed: 1}}
	var mu sync.Mutex
	first, refusals, handedIn := true, 0, false
	w := prefixWorker(func(_ context.Context, _ peer.ID, req, resp any) error {
		r := *req.(*syncRequest)
		mu.Lock()
		defer mu.Unlock()
		if len(r.Results) > 0 && refusals < 3 {
			refusals++
			return errors.New("remote: not the leader")
		}
		out := resp.(*syncResponse)
		*out = syncResponse{Term: 1}
		for _, res := range r.Results {
			out.Acked = append(out.Acked, res.Chunk)
			handedIn = handedIn || res.Lease == 1
		}
		if first {
			first = false
			out.Leases = []lease{{ID: 1, Term: 1, Chunk: compute.Chunk{Job: "j1", Range: compute.Range{Start: 0, End: 1 << 20}}, Spec: spec}}
		}
		return nil
	})
	stopMidChunk(t, w)
	mu.Lock()
	defer mu.Unlock()
	if !handedIn {
		t.Fatalf("the prefix was not handed in after %d refusals", refusals)
	}
}

// stopMidChunk runs w until its prefixRunner has started a chunk, stops it, and waits for Run.
func stopMidChunk(t *testing.T, w *Worker) {
	t.Helper()
	started := w.runner.(prefixRunner).started
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); w.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the chunk never started")
	}
	stop()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not stop")
	}
}

// prefixWorker is a worker of a single leader, answered by call, that computes with a
// prefixRunner while the owner lets it run.
func prefixWorker(call func(ctx context.Context, to peer.ID, req, resp any) error) *Worker {
	return NewWorker(WorkerConfig{
		Self:   "worker",
		Leader: func() (peer.ID, bool) { return "leader", true },
		Call:   call,
		Runner: prefixRunner{started: make(chan struct{})},
		Owner:  func() owner.Decision { return owner.Decision{State: owner.StateRun} },
	})
}
