package work

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
)

// partsRunner stands in for the compute child after a pause that froze it: the prefix of the
// chunk and one range finished ahead of it (child.Result.Also).
type partsRunner struct{}

func (partsRunner) Run(_ context.Context, c child.Chunk, _ func(uint64)) (child.Result, error) {
	n := c.Range.Len() / 4
	done := compute.Range{Start: c.Range.Start, End: c.Range.Start + n}
	ahead := compute.Range{Start: c.Range.Start + 2*n, End: c.Range.Start + 3*n}
	pd, err := refPayload(c.Spec, done)
	if err != nil {
		return child.Result{}, err
	}
	pa, err := refPayload(c.Spec, ahead)
	if err != nil {
		return child.Result{}, err
	}
	return child.Result{ID: c.ID, Done: done, Payload: pd, ComputeSeconds: 1, Also: []child.Part{{Done: ahead, Payload: pa}}}, nil
}

func (partsRunner) StopTask() {}

// TestWorker_HandsInRangesFinishedAhead: a worker hands in the prefix of a frozen chunk and the
// ranges finished ahead of it, each as a result of the lease; the coordinator commits both and
// leases again only the rest (the hole between them and the tail).
func TestWorker_HandsInRangesFinishedAhead(t *testing.T) {
	const seed = 3
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 24, Seed: seed}}
	c := newTestLeadership(t, spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var committed []compute.ChunkResult
	two := make(chan struct{}) // closed once two results are committed
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case req := <-c.commits:
				mu.Lock()
				before := len(committed)
				committed = append(committed, req.items...)
				if before < 2 && len(committed) >= 2 {
					close(two)
				}
				mu.Unlock()
				req.done <- commitRes{outcome: &compute.ResultsOutcome{Accepted: len(req.items)}}
			}
		}
	}()
	self, leader := peer.ID("worker"), peer.ID("leader")
	var leased compute.Range
	var once sync.Once
	w := NewWorker(WorkerConfig{
		Self:   self,
		Leader: func() (peer.ID, bool) { return leader, true },
		Call: func(ctx context.Context, _ peer.ID, req, resp any) error {
			r := *req.(*syncRequest)
			r.Want = min(r.Want, 1)
			out, err := c.sync(ctx, self, &r)
			if err != nil {
				return err
			}
			for _, l := range out.Leases {
				once.Do(func() { leased = l.Range })
			}
			if len(out.Leases) > 0 && leased != out.Leases[0].Range {
				out.Leases = nil // one chunk is enough
			}
			b, _ := json.Marshal(out)
			return json.Unmarshal(b, resp)
		},
		Runner: partsRunner{},
		Owner:  func() owner.Decision { return owner.Decision{State: owner.StateRun} },
	})
	c.leaseAt = time.Time{}
	go w.Run(ctx)
	select {
	case <-two:
	case <-time.After(30 * time.Second):
		t.Fatal("the prefix and the range ahead were not both committed")
	}
	mu.Lock()
	defer mu.Unlock()
	q := leased.Len() / 4
	want := []compute.Range{{Start: leased.Start, End: leased.Start + q}, {Start: leased.Start + 2*q, End: leased.Start + 3*q}}
	for i, it := range committed[:2] {
		if it.Range != want[i] || it.Job != "j1" {
			t.Fatalf("result %d: %s %s, want %s", i, it.Job, it.Range, want[i])
		}
	}
	// The two committed ranges are neither pending nor leased any more; the hole between them
	// and the tail of the chunk are (the coordinator drops committed ranges once their commit
	// returns: wait for that).
	rest := []compute.Range{{Start: want[0].End, End: want[1].Start}, {Start: want[1].End, End: leased.End}}
	var gone, lost []compute.Range
	for end := time.Now().Add(10 * time.Second); ; {
		c.mu.Lock()
		gone, lost = c.sched.Orphans("j1", want), c.sched.Orphans("j1", rest)
		c.mu.Unlock()
		if len(gone) == 2 && len(lost) == 0 || time.Now().After(end) {
			break
		}
		<-time.After(5 * time.Millisecond) // polling a condition with a deadline
	}
	if len(gone) != 2 || gone[0] != want[0] || gone[1] != want[1] || len(lost) != 0 {
		t.Fatalf("committed ranges still scheduled: %v of %v; rest not scheduled: %v", gone, want, lost)
	}
}

// TestWorkerStateFollowsTheOwner: the state a worker announces is the owner
// policy's pause or throttle whether or not a chunk is in hand, else idle
// (no chunk) or working. Before, a throttled node with no chunk announced
// "idle" beside the throttle's reason: `idle: cpu 85 °C` in hydra status and
// on the page, where docs/api.md has the reason say why a node is throttled
// or paused.
func TestWorkerStateFollowsTheOwner(t *testing.T) {
	for _, c := range []struct {
		d    owner.Decision
		want string
	}{
		{owner.Decision{State: owner.StateRun}, "idle"},
		{owner.Decision{State: owner.StateThrottled, Throttle: 0.5, Reason: "cpu 85 °C"}, "throttled"},
		{owner.Decision{State: owner.StatePaused, Reason: "on battery"}, "paused"},
	} {
		w := NewWorker(WorkerConfig{Self: "worker", Runner: partsRunner{}, Owner: func() owner.Decision { return c.d }})
		if got := w.State(); got != c.want {
			t.Errorf("owner %s (%s), no chunk in hand: state %q, want %q", c.d.State, c.d.Reason, got, c.want)
		}
	}
}

// TestWorker_DropsQueuedLeasesOfAnEarlierTerm: when the same node leads again in a new term
// (leadership lost and won back), the leader does not change, but the new coordinator's
// scheduler knows nothing of the old term's leases and leases their work again. The worker
// drops the chunks it had queued under the old term, rather than compute them a second time,
// and asks for work in their place.
func TestWorker_DropsQueuedLeasesOfAnEarlierTerm(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 24, Seed: 1}}
	chunk := func(i uint64) compute.Chunk {
		return compute.Chunk{Job: "j1", Range: compute.Range{Start: i << 20, End: (i + 1) << 20}}
	}
	answers := []syncResponse{
		{Term: 1, Leases: []lease{{ID: 1, Term: 1, Chunk: chunk(0), Spec: spec}, {ID: 2, Term: 1, Chunk: chunk(1), Spec: spec}}},
		{Term: 2}, // the same leader, in a new term
		{Term: 2},
	}
	var reqs []syncRequest
	leader := peer.ID("leader")
	w := NewWorker(WorkerConfig{
		Self:   "worker",
		Leader: func() (peer.ID, bool) { return leader, true },
		Call: func(_ context.Context, _ peer.ID, req, resp any) error {
			reqs = append(reqs, *req.(*syncRequest))
			*resp.(*syncResponse) = answers[len(reqs)-1]
			return nil
		},
		Runner: partsRunner{},
		Owner:  func() owner.Decision { return owner.Decision{State: owner.StateRun} },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range answers { // the compute loop is not running: what is leased stays queued
		if err := w.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if w.Busy() {
		t.Fatalf("queued leases of term 1 kept under the term 2 coordinator: %+v", w.queue)
	}
	if last := reqs[len(reqs)-1]; last.Want != prefetchDepth || len(last.Leases) != 0 {
		t.Fatalf("after the new term: want %d, leases %v; want %d and none", last.Want, last.Leases, prefetchDepth)
	}
}
