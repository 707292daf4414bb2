package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
	"github.com/hydra-compute/hydra/p2p"
)

// Worker timings.
const (
	syncEvery     = 500 * time.Millisecond // progress reports and polling for work
	syncRetry     = 250 * time.Millisecond // after a failed exchange
	prefetchDepth = 2                      // one chunk in hand, one queued
	finalFlush    = 3 * time.Second        // on shutdown: time to hand in the last results
)

// worker computes chunks for the coordinator in the compute child process
// (docs/design.md §7): it keeps one chunk in hand and one queued, reports
// progress, and keeps every result until the coordinator acknowledges it as
// committed, resubmitting to a new leader after a change.
type worker struct {
	n      *Node
	log    *slog.Logger
	runner *child.Runner

	mu       sync.Mutex
	leader   peer.ID
	term     uint64
	queue    []workLease // queue[0] runs when running != nil
	running  *workLease
	discard  bool               // the running lease was cancelled: throw its result away
	stopRun  context.CancelFunc // stops the chunk in hand (keeping its prefix)
	results  []workResult
	failed   []uint64
	progress atomic.Uint64

	wakeSync    chan struct{}
	wakeCompute chan struct{}
}

func newWorker(n *Node, r *child.Runner) *worker {
	return &worker{
		n: n, log: n.log.With("component", "worker"), runner: r,
		wakeSync: make(chan struct{}, 1), wakeCompute: make(chan struct{}, 1),
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run works until ctx ends, then stops the chunk in hand, keeps its
// finished prefix and hands in what it can before returning.
func (w *worker) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.computeLoop(ctx) }()
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		err := w.sync(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Debug("sync with coordinator", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-w.wakeSync:
		}
	}
	wg.Wait()
	if w.n.crash.Load() {
		return
	}
	// Hand in what was finished, including the prefix of the stopped chunk.
	fctx, cancel := context.WithTimeout(context.Background(), finalFlush)
	defer cancel()
	for fctx.Err() == nil {
		w.mu.Lock()
		left := len(w.results)
		w.mu.Unlock()
		if left == 0 {
			return
		}
		if err := w.sync(fctx); err != nil {
			w.log.Warn("results not handed in before stopping: the coordinator will reassign them", "results", left, "err", err)
			return
		}
	}
}

// sync does one exchange with the coordinator.
func (w *worker) sync(ctx context.Context) error {
	leader, ok := w.n.raft.Leader()
	if !ok || leader == "" {
		return errors.New("no leader")
	}
	w.mu.Lock()
	if leader != w.leader {
		// A new coordinator renumbers leases: drop the queued ones (it will
		// lease that work again); the chunk in hand goes on, and the new
		// coordinator adopts it (Held) unless its range went elsewhere.
		if w.leader != "" {
			w.log.Info("new coordinator", "leader", leader)
		}
		w.leader = leader
		w.queue = nil
	}
	req := &syncRequest{Term: w.term, Results: append([]workResult(nil), w.results...), Failed: w.failed, Kernel: compute.KernelPath()}
	w.failed = nil
	inHand := len(w.queue)
	if w.running != nil {
		inHand++
	}
	if w.ctxPaused() {
		// Paused by the owner: queued chunks go back to the coordinator at
		// once, so others take them; the one in hand stops and hands in
		// its finished prefix.
		req.Paused = true
		if w.running != nil && w.stopRun != nil {
			w.stopRun() // even a chunk that had not started when the pause came
		}
		for _, l := range w.queue {
			if l.Term == w.term {
				w.failed = append(w.failed, l.ID)
			}
		}
		w.queue = nil
		req.Failed = w.failed
		w.failed = nil
	} else if ctx.Err() == nil {
		req.Want = max(0, prefetchDepth-inHand)
	}
	for _, l := range w.queue {
		if l.Term == w.term {
			req.Leases = append(req.Leases, l.ID)
		}
	}
	if r := w.running; r != nil {
		if r.Term == w.term && !req.Paused {
			req.Leases = append(req.Leases, r.ID)
			req.Progress = []leaseProgress{{Lease: r.ID, Done: w.progress.Load()}}
		}
		req.Held = []heldLease{{ID: r.ID, Term: r.Term, Job: r.Job, Start: r.Start, End: r.End}}
	}
	req.State = w.stateLocked()
	w.mu.Unlock()

	resp, err := w.call(ctx, leader, req)
	if err != nil {
		w.mu.Lock()
		w.failed = append(w.failed, req.Failed...)
		w.mu.Unlock()
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	acked := map[resultKey]bool{}
	for _, k := range resp.Acked {
		acked[k] = true
	}
	kept := w.results[:0]
	for _, r := range w.results {
		if !acked[r.key()] {
			kept = append(kept, r)
		}
	}
	w.results = kept
	w.term = resp.Term
	for _, a := range resp.Adopted {
		if r := w.running; r != nil && r.ID == a.Old && r.Term == a.OldTerm {
			r.ID, r.Term = a.New, resp.Term
		}
	}
	cancel := map[uint64]bool{}
	for _, id := range resp.Cancel {
		cancel[id] = true
	}
	q := w.queue[:0]
	for _, l := range w.queue {
		if !cancel[l.ID] {
			q = append(q, l)
		}
	}
	w.queue = q
	if r := w.running; r != nil && r.Term == resp.Term && cancel[r.ID] {
		w.discard = true
		w.runner.StopTask()
	}
	if len(resp.Leases) > 0 {
		w.queue = append(w.queue, resp.Leases...)
		poke(w.wakeCompute)
	}
	return nil
}

// call reaches the coordinator: in-process when this node leads.
func (w *worker) call(ctx context.Context, leader peer.ID, req *syncRequest) (*syncResponse, error) {
	if leader == w.n.host.ID() {
		c := w.n.coord.Load()
		if c == nil {
			return nil, errNotCoordinator
		}
		return c.sync(ctx, leader, req)
	}
	var resp syncResponse
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p2p.Call(cctx, w.n.host.Host(), leader, ProtocolWork, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// computeLoop runs queued leases one after the other in the child.
func (w *worker) computeLoop(ctx context.Context) {
	for {
		w.mu.Lock()
		var lease workLease
		ready := len(w.queue) > 0 && !w.ctxPaused() && ctx.Err() == nil
		if ready {
			lease = w.queue[0]
			w.queue = w.queue[1:]
			w.running, w.discard = &lease, false
			w.progress.Store(0)
		}
		w.mu.Unlock()
		if !ready {
			select {
			case <-ctx.Done():
				return
			case <-w.wakeCompute:
				continue
			}
		}
		start := time.Now()
		rctx, stop := context.WithCancel(ctx)
		w.mu.Lock()
		w.stopRun = stop
		w.mu.Unlock()
		res, err := w.runner.Run(rctx, child.Task{ID: lease.ID, Spec: lease.Spec, Range: compute.Range{Start: lease.Start, End: lease.End}},
			func(done uint64) { w.progress.Store(done) })
		stop()
		w.mu.Lock()
		w.stopRun = nil
		cur := *w.running // its ID and term may have changed by adoption
		w.running = nil
		switch {
		case err != nil:
			w.log.Warn("chunk failed", "job", cur.Job, "start", cur.Start, "end", cur.End, "err", err)
			if cur.Term == w.term {
				w.failed = append(w.failed, cur.ID)
			}
		case w.discard:
			w.log.Debug("chunk cancelled", "job", cur.Job, "lease", cur.ID)
		case res.Done.Len() == 0 && cur.Term == w.term:
			w.failed = append(w.failed, cur.ID) // stopped before it began: give it back
		case res.Done.Len() > 0:
			w.results = append(w.results, workResult{
				Lease: cur.ID, Term: cur.Term, Job: cur.Job, Start: res.Done.Start, End: res.Done.End,
				Seconds: res.ComputeSeconds, Payload: res.Payload,
			})
			w.log.Debug("chunk done", "job", cur.Job, "range", res.Done, "took", time.Since(start).Round(time.Millisecond))
		}
		w.discard = false
		w.mu.Unlock()
		poke(w.wakeSync)
		if ctx.Err() != nil {
			return
		}
	}
}

// ctxPaused reports whether the owner policy holds compute back.
func (w *worker) ctxPaused() bool { return w.n.paused() }

func (w *worker) stateLocked() string {
	switch d := w.n.owner.get(); d.State {
	case owner.StatePaused:
		return "paused"
	case owner.StateThrottled:
		if w.running != nil {
			return "throttled"
		}
	}
	if w.running != nil {
		return "working"
	}
	return "idle"
}

// State is the worker's state for announcements.
func (w *worker) State() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stateLocked()
}

// serveWork registers the work protocol: every node answers, but only the
// current coordinator serves; others say so and the worker retries.
func (n *Node) serveWork() {
	p2p.Serve(n.host.Host(), ProtocolWork, maxWorkFrame, 30*time.Second, n.log, func(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
		var req syncRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, err
		}
		if err := req.validate(); err != nil {
			return nil, err
		}
		c := n.coord.Load()
		if c == nil {
			return nil, errNotCoordinator
		}
		if !n.isMember(from) {
			return nil, fmt.Errorf("%s is not a member of this cluster", from)
		}
		return c.sync(ctx, from, &req)
	})
}

// isMember reports whether p is in the raft configuration: only members
// take work and hand in results.
func (n *Node) isMember(p peer.ID) bool {
	for _, s := range n.raft.Servers() {
		if s.ID == p {
			return true
		}
	}
	return false
}
