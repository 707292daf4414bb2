package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// errNotCoordinator answers a sync sent to a node that is not (or no
// longer) the leader; the worker looks the leader up again.
var errNotCoordinator = errors.New("not the coordinator")

// Coordinator timings.
const (
	reconcileEvery = 150 * time.Millisecond // pick up new, cancelled, deleted jobs
	tickEvery      = 500 * time.Millisecond // lease deadlines
	repairEvery    = 3 * time.Second        // requeue work that stayed orphaned this long (see repairLocked)
	workerSilence  = 3 * time.Second        // no sync for this long: the node is gone
	adoptGrace     = time.Second            // a new coordinator hears every worker before leasing
	evictEvery     = time.Minute
	maxBatchItems  = 256
	maxBatchBytes  = 2 << 20
)

// coordinator is the leader-only half of the work protocol: it owns the
// scheduler (soft state, rebuilt on every leadership from the replicated
// job state) and commits results through raft in batches. One exists per
// leadership term; it dies with it.
type coordinator struct {
	n    *Node
	log  *slog.Logger
	term uint64

	mu       sync.Mutex
	sched    *compute.Scheduler
	jobs     map[string]bool            // jobs known to the scheduler
	lastSeen map[string]time.Time       // node → last sync
	kernels  map[string]string          // node → kernel path it reported
	adopted  map[heldLease]uint64       // chunks of earlier terms (ID, term zeroed) → lease here
	leaseAt  time.Time                  // no new leases before (adoptGrace after start)
	orphans  map[string][]compute.Range // job → orphaned ranges at the last repair pass
	repairAt time.Time                  // next repair pass

	commits chan *commitReq
}

type commitReq struct {
	items []compute.ChunkResult
	done  chan commitRes
}

type commitRes struct {
	outcome *compute.ResultsOutcome
	err     error
}

// runCoordinator is the leader hook: it runs until leadership is lost.
func (n *Node) runCoordinator(ctx context.Context) {
	st := n.raft.State()
	c := &coordinator{
		n:        n,
		log:      n.log.With("component", "coordinator"),
		term:     n.raft.Term(),
		sched:    compute.NewScheduler(compute.SchedulerConfig{ChunkTarget: st.ChunkTarget}),
		jobs:     map[string]bool{},
		lastSeen: map[string]time.Time{},
		kernels:  map[string]string{},
		adopted:  map[heldLease]uint64{},
		leaseAt:  time.Now().Add(adoptGrace),
		commits:  make(chan *commitReq, 1024),
	}
	c.reconcile(time.Now())
	n.coord.Store(c)
	defer n.coord.CompareAndSwap(c, nil)
	c.log.Info("coordinator started", "term", c.term, "jobs", len(c.jobs))

	notifee := &network.NotifyBundle{DisconnectedF: func(_ network.Network, conn network.Conn) {
		p := conn.RemotePeer()
		if n.host.Host().Network().Connectedness(p) != network.Connected {
			c.nodeGone(p.String(), time.Now())
		}
	}}
	n.host.Host().Network().Notify(notifee)
	defer n.host.Host().Network().StopNotify(notifee)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.committer(ctx) }()
	defer wg.Wait()

	rec := time.NewTicker(reconcileEvery)
	tick := time.NewTicker(tickEvery)
	evict := time.NewTicker(evictEvery)
	publish := time.NewTicker(time.Second)
	defer publish.Stop()
	defer rec.Stop()
	defer tick.Stop()
	defer evict.Stop()
	for {
		select {
		case <-ctx.Done():
			c.log.Info("coordinator stopped", "term", c.term)
			return
		case now := <-rec.C:
			c.reconcile(now)
		case now := <-tick.C:
			c.tick(now)
		case now := <-evict.C:
			c.evict(ctx, now)
		case now := <-publish.C:
			c.publishActivity(ctx, now)
		}
	}
}

// reconcile aligns the scheduler with the replicated job state: new jobs
// are added with their pending ranges (all minus accepted), finished,
// cancelled and deleted ones removed.
func (c *coordinator) reconcile(now time.Time) {
	unfinished := c.n.jobs.Unfinished()
	c.mu.Lock()
	defer c.mu.Unlock()
	live := make(map[string]bool, len(unfinished))
	for _, u := range unfinished {
		live[u.ID] = true
		if c.jobs[u.ID] {
			continue
		}
		if err := c.sched.AddJob(u.ID, u.Spec, u.Pending, u.Status == compute.StatusRunning); err != nil {
			c.log.Error("add job to scheduler", "job", u.ID, "err", err)
			continue
		}
		c.jobs[u.ID] = true
		c.log.Info("scheduling job", "job", u.ID, "kind", u.Spec.Kind, "pending_ranges", len(u.Pending))
	}
	for id := range c.jobs {
		if !live[id] {
			c.sched.RemoveJob(id)
			delete(c.jobs, id)
		}
	}
	if now.After(c.repairAt) {
		c.repairAt = now.Add(repairEvery)
		c.repairLocked(unfinished)
	}
}

// repairLocked requeues work that nobody will compute: unaccepted ranges of
// a job that are neither pending nor leased, in this pass and in the one
// before (a result being committed is orphaned only briefly). Every path
// that drops a lease should put its unfinished range back; this makes a
// slip in that bookkeeping cost repairEvery, not a job that never ends.
func (c *coordinator) repairLocked(unfinished []compute.UnfinishedJob) {
	prev := c.orphans
	c.orphans = map[string][]compute.Range{}
	for _, u := range unfinished {
		if !c.jobs[u.ID] {
			continue
		}
		now := c.sched.Orphans(u.ID, u.Pending)
		if len(now) == 0 {
			continue
		}
		c.orphans[u.ID] = now
		// Orphaned now and at the last pass: now ∩ prev.
		before := compute.NewRangeSet(prev[u.ID]...)
		both := compute.NewRangeSet(now...)
		notBefore := before.Complement(compute.Range{Start: 0, End: ^uint64(0)})
		for _, r := range notBefore.Ranges() {
			both.Remove(r)
		}
		if both.Count() == 0 {
			continue
		}
		c.log.Warn("requeued work that nobody held", "job", u.ID, "ranges", both.Ranges(), "units", both.Units())
		c.sched.Requeue(u.ID, both.Ranges())
	}
}

func (c *coordinator) tick(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.sched.Tick(now) {
		c.log.Info("lease expired", "lease", ev.Lease.ID, "node", ev.Lease.Node, "job", ev.Lease.Job, "range", ev.Lease.Range)
	}
	for node, seen := range c.lastSeen {
		if now.Sub(seen) > workerSilence {
			c.nodeGoneLocked(node, now)
		}
	}
}

func (c *coordinator) nodeGone(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeGoneLocked(node, now)
}

func (c *coordinator) nodeGoneLocked(node string, now time.Time) {
	if _, ok := c.lastSeen[node]; !ok {
		return
	}
	delete(c.lastSeen, node)
	if evs := c.sched.NodeGone(node, now); len(evs) > 0 {
		c.log.Info("node gone: chunks requeued", "node", node, "chunks", len(evs))
	}
}

func (c *coordinator) evict(ctx context.Context, now time.Time) {
	cmd := compute.Evict{Now: now, Retention: c.n.cfg.Retention, DiskCap: c.n.cfg.DiskCap}
	if _, err := c.n.applyJob(ctx, cmd); err != nil && ctx.Err() == nil {
		c.log.Warn("evict finished jobs", "err", err)
	}
}

// sync serves one worker exchange.
func (c *coordinator) sync(ctx context.Context, from peer.ID, req *syncRequest) (*syncResponse, error) {
	now := time.Now()
	node := from.String()
	resp := &syncResponse{Term: c.term}

	c.mu.Lock()
	c.lastSeen[node] = now
	if req.Kernel != "" && len(req.Kernel) < 32 {
		c.kernels[node] = req.Kernel
	}
	for _, h := range req.Held {
		if h.Term == c.term {
			continue
		}
		key := heldLease{Job: h.Job, Start: h.Start, End: h.End}
		id, ok := c.adopted[key]
		if !ok {
			l, adopted := c.sched.Adopt(node, h.Job, compute.Range{Start: h.Start, End: h.End}, now)
			if !adopted {
				continue
			}
			id = l.ID
			c.adopted[key] = id
			c.log.Info("adopted a chunk leased by the previous coordinator", "node", node, "job", h.Job, "range", compute.Range{Start: h.Start, End: h.End})
		}
		resp.Adopted = append(resp.Adopted, adoption{Old: h.ID, OldTerm: h.Term, New: id})
	}
	for _, p := range req.Progress {
		c.sched.Progress(p.Lease, p.Done, now)
	}
	for _, id := range req.Failed {
		c.sched.Fail(id)
	}
	items := make([]compute.ChunkResult, 0, len(req.Results))
	for _, r := range req.Results {
		rng := compute.Range{Start: r.Start, End: r.End}
		if r.Term == c.term {
			// A prefix (the worker paused or stopped): the rest goes back.
			c.sched.CompletePrefix(r.Lease, rng, now)
		}
		items = append(items, compute.ChunkResult{Job: r.Job, Range: rng, Node: node, ComputeSeconds: r.Seconds, Payload: r.Payload})
	}
	c.mu.Unlock()

	if len(items) > 0 {
		out, err := c.commit(ctx, items)
		if err != nil {
			return nil, fmt.Errorf("commit results: %w", err)
		}
		rejected := map[int]bool{}
		for _, rj := range out.Rejected {
			rejected[rj.Index] = true
		}
		c.mu.Lock()
		for i, it := range items {
			if !rejected[i] {
				c.sched.Accepted(it.Job, it.Range)
			}
			resp.Acked = append(resp.Acked, req.Results[i].key())
		}
		for _, id := range out.Finished {
			c.sched.RemoveJob(id)
			delete(c.jobs, id)
			c.log.Info("job done", "job", id)
		}
		c.mu.Unlock()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[uint64]bool{}
	for _, l := range c.sched.Leases() {
		if l.Node == node {
			live[l.ID] = true
		}
	}
	if req.Term == c.term {
		for _, id := range req.Leases {
			if !live[id] {
				resp.Cancel = append(resp.Cancel, id)
			}
		}
	}
	if req.Paused || now.Before(c.leaseAt) {
		return resp, nil
	}
	for range req.Want {
		l, ok := c.sched.Lease(node, now)
		if !ok {
			break
		}
		j, found := c.n.jobs.Job(l.Job)
		if !found {
			c.sched.Fail(l.ID)
			break
		}
		if l.FirstOfJob {
			go c.markStarted(l.Job, now)
		}
		resp.Leases = append(resp.Leases, workLease{ID: l.ID, Term: c.term, Job: l.Job, Spec: j.Spec, Start: l.Range.Start, End: l.Range.End})
	}
	return resp, nil
}

func (c *coordinator) markStarted(job string, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.n.applyJob(ctx, compute.Started{Job: job, Time: now}); err != nil {
		c.log.Debug("mark job started", "job", job, "err", err)
	}
}

// commit hands items to the committer and waits for their batch.
func (c *coordinator) commit(ctx context.Context, items []compute.ChunkResult) (*compute.ResultsOutcome, error) {
	req := &commitReq{items: items, done: make(chan commitRes, 1)}
	select {
	case c.commits <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.outcome, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// committer batches the results of concurrent syncs into one raft entry
// (group commit): while one batch is being committed the next one fills.
func (c *coordinator) committer(ctx context.Context) {
	for {
		var batch []*commitReq
		select {
		case <-ctx.Done():
			return
		case r := <-c.commits:
			batch = append(batch, r)
		}
		n, size := len(batch[0].items), payloadSize(batch[0].items)
	fill:
		for n < maxBatchItems && size < maxBatchBytes {
			select {
			case r := <-c.commits:
				batch = append(batch, r)
				n += len(r.items)
				size += payloadSize(r.items)
			default:
				break fill
			}
		}
		var all []compute.ChunkResult
		for _, r := range batch {
			all = append(all, r.items...)
		}
		out, err := c.applyResults(ctx, all)
		off := 0
		for _, r := range batch {
			res := commitRes{err: err}
			if err == nil {
				res.outcome = sliceOutcome(out, off, len(r.items))
			}
			off += len(r.items)
			r.done <- res
		}
	}
}

func (c *coordinator) applyResults(ctx context.Context, items []compute.ChunkResult) (*compute.ResultsOutcome, error) {
	raw, err := c.n.applyJob(ctx, compute.Results{Time: time.Now(), Items: items})
	if err != nil {
		return nil, err
	}
	var out compute.ResultsOutcome
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode results outcome: %w", err)
	}
	return &out, nil
}

// sliceOutcome picks the part of a batch's outcome about items
// [off, off+n), renumbered from 0.
func sliceOutcome(out *compute.ResultsOutcome, off, n int) *compute.ResultsOutcome {
	s := &compute.ResultsOutcome{Finished: out.Finished}
	for _, rj := range out.Rejected {
		if rj.Index >= off && rj.Index < off+n {
			rj.Index -= off
			s.Rejected = append(s.Rejected, rj)
		}
	}
	s.Accepted = n - len(s.Rejected)
	return s
}

func payloadSize(items []compute.ChunkResult) int {
	s := 0
	for _, it := range items {
		s += len(it.Payload) + 64
	}
	return s
}

// applyJob proposes a job-state command through raft (forwarded to the
// leader from a follower) and returns its JSON result.
func (n *Node) applyJob(ctx context.Context, cmd any) (json.RawMessage, error) {
	op, payload, err := compute.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	return n.raft.Apply(ctx, consensus.Command{Op: consensus.Op(op), Payload: payload})
}
