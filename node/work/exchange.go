package work

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// sync serves one worker exchange: it notes the worker, adopts the chunks it holds from an
// earlier term, takes its reports, commits its results and audit answers, and leases it work.
func (c *leadership) sync(ctx context.Context, from peer.ID, req *syncRequest) (*syncResponse, error) {
	now := time.Now()
	node := from.String()
	resp := &syncResponse{Term: c.term}

	c.mu.Lock()
	c.noteWorkerLocked(node, req, now)
	// A worker waiting on its exchange (a slow commit) is not silent: tick leaves it alone until
	// the exchange ends, which counts as seen too.
	if c.exchanging == nil {
		c.exchanging = map[string]int{}
	}
	c.exchanging[node]++
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.exchanging[node]--; c.exchanging[node] <= 0 {
			delete(c.exchanging, node)
		}
		if _, ok := c.lastSeen[node]; ok {
			c.lastSeen[node] = time.Now()
		}
	}()
	if c.quarantinedLocked(node) {
		// The job state refuses its results: what it holds goes to others before they come in,
		// and nothing it holds is adopted.
		c.takeBackLocked(node, now)
	} else {
		c.adoptLocked(node, req, now, resp)
	}
	c.reportsLocked(node, req, now)
	items, keys, audits := c.sortResultsLocked(node, req, now, resp)
	c.mu.Unlock()

	if len(items) > 0 || len(audits) > 0 {
		if err := c.commitResults(ctx, node, items, keys, audits, resp); err != nil {
			return nil, err
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	quarantined := c.quarantinedLocked(node)
	if quarantined {
		c.takeBackLocked(node, now) // quarantined meanwhile (or just now): cancelled below
	}
	c.cancelsLocked(node, req, resp)
	resp.Idle = len(c.jobs) == 0 && !c.changedLocked()
	if req.Paused || now.Before(c.leaseAt) || quarantined {
		return resp, nil // a quarantined node gets no work until an admin clears it
	}
	c.leaseLocked(ctx, node, req, now, resp)
	return resp, nil
}

// noteWorkerLocked records what a sync request says of its node: when it was seen, whether it
// is paused, its clock, kernel path and architecture.
func (c *leadership) noteWorkerLocked(node string, req *syncRequest, now time.Time) {
	c.lastSeen[node] = now
	if req.Paused {
		c.paused[node] = true
	} else {
		delete(c.paused, node)
	}
	if !req.Now.IsZero() {
		if c.offsets == nil {
			c.offsets = map[string]time.Duration{}
		}
		c.offsets[node] = req.Now.Sub(now) // the request's transit makes it a little late: harmless
	}
	if req.Kernel != "" && len(req.Kernel) < 32 {
		c.kernels[node] = req.Kernel
	}
	if req.Arch != "" && len(req.Arch) < 32 {
		c.arch[node] = req.Arch
	}
}

// adoptLocked leases here the chunks in the worker's hand that an earlier term leased
// (resp.Adopted renames them).
func (c *leadership) adoptLocked(node string, req *syncRequest, now time.Time, resp *syncResponse) {
	for _, h := range req.Held {
		if h.Term == c.term {
			continue
		}
		key := h.Chunk
		id, ok := c.adopted[key]
		if !ok {
			l, adopted := c.sched.Adopt(node, h.Job, h.Range, now)
			if !adopted {
				continue
			}
			id = l.ID
			c.adopted[key] = id
			c.grantLocked(node, h.Job, l.Range)
			c.log.Info("adopted a chunk leased by the previous coordinator", "node", node, "job", h.Job, "range", h.Range)
		}
		resp.Adopted = append(resp.Adopted, adoption{Old: h.ID, OldTerm: h.Term, New: id})
	}
}

// reportsLocked takes the worker's progress, module faults and failed leases. Only its own
// leases count: lease IDs are sequential, and a worker that named any ID would requeue or
// stretch every other node's leases. So do only the leases of this term: each term's scheduler
// numbers its leases from 1, and a worker's first exchange with a new leader still reports
// under the term it last heard (req.Term), so the ID of a chunk that failed under the old
// leader may name one of the node's leases here (the chunk in hand, adopted in this very
// exchange), which would go back to the pending work while the node computes it. Audit lease
// IDs name replicated audits, the same in every term.
func (c *leadership) reportsLocked(node string, req *syncRequest, now time.Time) {
	var others []uint64
	// The IDs of another term name nothing here, and a warning that they name another node's
	// lease (notHeldLocked) would be false.
	stale := req.Term != c.term
	for _, p := range req.Progress {
		if stale {
			continue
		}
		if !c.sched.Holds(node, p.Lease) {
			others = append(others, p.Lease)
			continue
		}
		c.sched.Progress(p.Lease, p.Done, now)
	}
	for _, f := range req.Faults {
		c.faultLocked(node, f)
	}
	for _, id := range req.Failed {
		if id >= auditLeaseBase {
			c.releaseAuditLocked(id, node) // only the auditor's own
			continue
		}
		if stale {
			continue
		}
		if !c.sched.Holds(node, id) {
			others = append(others, id)
			continue
		}
		c.sched.Fail(id)
	}
	c.notHeldLocked(node, others)
}

// notHeldLocked logs the lease IDs of node's exchange that are not leases it holds (ignored).
// A lease that expired or was cancelled is a worker's everyday case: debug. One another node
// holds is a confused or hostile worker's: a warning, once per node and term, so that a worker
// that names them in every exchange does not flood the log.
func (c *leadership) notHeldLocked(node string, ids []uint64) {
	if len(ids) == 0 {
		return
	}
	if !c.warned[warnKey{node, warnLeases}] {
		for _, id := range ids {
			if holder, ok := c.sched.Holder(id); ok && holder != node {
				c.warnOnceLocked(node, warnLeases, "a worker named another node's lease: ignored", "lease", id, "holder", holder)
				return
			}
		}
	}
	c.log.Debug("lease reports ignored: not the sender's leases", "node", node, "leases", ids)
}

// warnKind names a kind of refusal that is logged as a warning once per node and term.
type warnKind int

const (
	warnLeases warnKind = iota // lease IDs of another node
	warnResult                 // a result for a range not leased to the sender
)

type warnKey struct {
	node string
	kind warnKind
}

// warnOnceLocked logs msg as a warning the first time in this term that node is refused so,
// then at debug level: a worker that repeats it in every exchange shows once.
func (c *leadership) warnOnceLocked(node string, kind warnKind, msg string, args ...any) {
	args = append([]any{"node", node}, args...)
	if c.warned[warnKey{node, kind}] {
		c.log.Debug(msg, args...)
		return
	}
	c.warned[warnKey{node, kind}] = true
	c.log.Warn(msg+" (logged once per node and term)", args...)
}

// sortResultsLocked sorts the worker's results: the chunk results to commit (items, and the
// keys they are acknowledged by), the audit answers, and the refused results (acknowledged in
// resp at once). The leases whose results came back are completed in the scheduler.
func (c *leadership) sortResultsLocked(node string, req *syncRequest, now time.Time, resp *syncResponse) (items []compute.ChunkResult, keys []compute.Chunk, audits []result) {
	items = make([]compute.ChunkResult, 0, len(req.Results))
	keys = make([]compute.Chunk, 0, len(req.Results))
	var done []leaseDone
	var others []uint64
	for _, r := range req.Results {
		if r.Audit != nil {
			audits = append(audits, r)
			continue
		}
		// Only results for ranges leased to the sender count: in this term,
		// a range leased or adopted to it; from an earlier term (leases this
		// coordinator never saw), a range nobody else holds now.
		if !c.grantedLocked(node, r.Job, r.Range) && (r.Term == c.term || c.heldByOtherLocked(node, r.Job, r.Range)) {
			c.warnOnceLocked(node, warnResult, "result refused: the range was not leased to the sender", "job", r.Job, "range", r.Range, "term", r.Term)
			resp.Acked = append(resp.Acked, r.Chunk) // settled: never resent
			continue
		}
		keys = append(keys, r.Chunk)
		if r.Term == c.term {
			if c.sched.Holds(node, r.Lease) {
				done = addDone(done, r.Lease, r.Range)
			} else {
				others = append(others, r.Lease) // its lease ended, or is not its own: commit only
			}
		}
		items = append(items, compute.ChunkResult{Chunk: r.Chunk, Node: node, ComputeSeconds: r.Seconds, Payload: r.Payload, Root: r.Root})
	}
	for _, d := range done {
		// The lease's result, or its finished prefix (the worker paused or stopped): the rest goes
		// back. A lease of a job with chunk_units comes back as one result per chunk, together.
		p := d.prefix()
		l, _, ok := c.sched.CompletePrefix(d.lease, p, now)
		// The parts beyond a gap (finished ahead of it in a child a pause froze) went back with
		// the rest, but they are being committed with the prefix: take them out of the pending
		// work now, as the prefix is. Left there until their commit returned, a concurrent
		// exchange could be leased a range reaching into one, which its commit then left only
		// partly inside: that lease ran on, its result was refused as an overlap, and the rest of
		// its range lay orphaned until the repair pass. A "prefix" that does not start at the
		// lease's start (the child was frozen before its first block was done: only ranges
		// ahead came back) is no prefix: the whole lease went back, so it too.
		whole := p.Start != l.Range.Start
		for _, r := range d.ranges {
			if ok && l.Range.Contains(r) && (whole || !p.Contains(r)) {
				c.sched.Accepted(l.Job, r)
			}
		}
	}
	c.notHeldLocked(node, others)
	return items, keys, audits
}

// commitResults commits the results and audit answers of one exchange and acknowledges them in
// resp.
func (c *leadership) commitResults(ctx context.Context, node string, items []compute.ChunkResult, keys []compute.Chunk, audits []result, resp *syncResponse) error {
	// Results and audit answers go to the committer together (shared raft entries).
	out, auditErrs, err := c.commitWithAudits(ctx, node, items, audits)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(auditErrs) < len(audits) {
		return fmt.Errorf("commit results: %w", err) // not answered: the term ended (termEnded)
	}
	for i, r := range audits {
		if auditErrs[i] != nil {
			c.log.Warn("audit answer refused", "node", node, "job", r.Job, "err", auditErrs[i])
		}
		resp.AckedAudits = append(resp.AckedAudits, r.Audit.ID)
	}
	if err != nil {
		return fmt.Errorf("commit results: %w", err)
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
		resp.Acked = append(resp.Acked, keys[i])
	}
	for _, id := range out.Finished {
		c.sched.RemoveJob(id)
		delete(c.jobs, id)
		c.forgetGrantsLocked(id)
		c.log.Info("job done", "job", id)
	}
	c.mu.Unlock()
	if c.cfg.Audits != nil && len(items) > 0 {
		c.challenge() // the committed chunks count once challenged (and audited)
	}
	return nil
}

// expiredLease is a lease that expired (its range went back to the pending work) while its node
// may still be running it.
type expiredLease struct {
	node, job string
	rng       compute.Range
}

// cancelsLocked tells the worker which of the leases it holds from this term are no longer its.
// A lease that expired is not, while its range is still to be done: its range is pending again,
// but the node runs on, and the first result for it counts (a lease with no progress by its
// deadline, such as a WebAssembly probe whose first item takes longer, was dropped and leased
// again as it was, and never finished). Once another node's result for all of it came back, the
// straggler is told to drop it.
func (c *leadership) cancelsLocked(node string, req *syncRequest, resp *syncResponse) {
	if req.Term != c.term {
		return
	}
	for _, id := range req.Leases {
		if e, ok := c.expired[id]; ok && e.node == node && c.jobs[e.job] && c.sched.Open(e.job, e.rng) {
			continue // still to be done: whoever hands it in first
		}
		if !c.sched.Holds(node, id) && !(id >= auditLeaseBase && c.auditLiveLocked(id, node)) {
			resp.Cancel = append(resp.Cancel, id)
		}
	}
	for id, e := range c.expired {
		if e.node == node && !slices.Contains(req.Leases, id) {
			delete(c.expired, id) // handed in, given back or dropped
		}
	}
}

// leaseLocked leases the worker what it wants: audits first, then chunks, and if there is
// neither, the audits that come within auditWait.
func (c *leadership) leaseLocked(ctx context.Context, node string, req *syncRequest, now time.Time, resp *syncResponse) {
	want := req.Want
	if want > 0 && c.cfg.Audits != nil {
		c.refreshAuditsIfDirtyLocked(now)
		// Audits first: results count only once their audit passed.
		audits := c.leaseAuditsLocked(node, now, want)
		resp.Leases = append(resp.Leases, audits...)
		want -= len(audits)
		if c.longAuditHeldLocked(node) {
			want = 0 // its next chunk is sized when it starts (longAuditHeldLocked)
		}
	}
	reconciled := false
	for range want {
		l, ok := c.sched.Lease(node, now)
		if !ok && !reconciled && c.changedLocked() {
			// A job changed since the last reconcile (a worker woken by a submit on its replica
			// may come before Lead has taken the job in): take it in now, once.
			reconciled = true
			c.mu.Unlock()
			c.reconcileIfChanged(now)
			c.mu.Lock()
			resp.Idle = len(c.jobs) == 0
			l, ok = c.sched.Lease(node, now)
		}
		if !ok {
			break
		}
		j, found := c.cfg.Jobs.Job(l.Job)
		if !found || len(j.Faults) > 0 && faultedOn(j, node, c.workingLocked()) {
			c.sched.Fail(l.ID) // gone, or kept for a node that has not seen the job's module fail
			break
		}
		c.grantLocked(node, l.Job, l.Range)
		if l.FirstOfJob {
			go c.markStarted(l.Job, now)
		}
		resp.Leases = append(resp.Leases, lease{ID: l.ID, Term: c.term, Chunk: l.Chunk, Spec: j.Spec})
	}
	if len(resp.Leases) == 0 && req.Want > 0 && c.cfg.Audits != nil && emptyHanded(req) {
		// Nothing to lease now: a worker with nothing in hand waits here for the audits on their
		// way rather than for its next exchange (a job's last audits waited for that). Chunks
		// first: an exchange never waits while there is a chunk it could take.
		resp.Leases = c.awaitAuditsLocked(ctx, node, req.Want)
	}
}

// startedAfter is how long after its first lease a job is marked started: one that is already
// running by then (its first result was committed, which starts it too) needs no entry of its own,
// which spares one raft entry per short job.
const startedAfter = 250 * time.Millisecond

// markStarted applies OpStarted for job (first leased at now) unless its first result was
// committed within startedAfter.
func (c *leadership) markStarted(job string, now time.Time) {
	select {
	case <-time.After(startedAfter):
	case <-c.ctx.Done():
		return
	}
	if j, ok := c.cfg.Jobs.Job(job); !ok || j.State != compute.StateQueued {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Apply(ctx, compute.Started{Job: job, Time: c.stamp(now)}); err != nil {
		c.log.Debug("mark job started", "job", job, "err", err)
	}
}

// grant is a range leased (or adopted) to a node in this term.
type grant struct {
	job string
	r   compute.Range
}

func (c *leadership) grantLocked(node, job string, r compute.Range) {
	c.granted[node] = append(c.granted[node], grant{job: job, r: r})
}

// grantedLocked reports whether r lies within a range leased or adopted to
// node for job in this term.
func (c *leadership) grantedLocked(node, job string, r compute.Range) bool {
	gs := c.granted[node]
	for i := len(gs) - 1; i >= 0; i-- { // the newest first: results come back in lease order
		if g := gs[i]; g.job == job && r.Start >= g.r.Start && r.End <= g.r.End {
			return true
		}
	}
	return false
}

// heldByOtherLocked reports whether another node holds a lease of job that
// overlaps r right now.
func (c *leadership) heldByOtherLocked(node, job string, r compute.Range) bool {
	for _, l := range c.sched.Leases() {
		if l.Job == job && l.Node != node && l.Range.Start < r.End && r.Start < l.Range.End {
			return true
		}
	}
	return false
}

// forgetGrantsLocked drops the grants and adoptions of a job that finished or is gone (cancelled,
// failed, deleted): a term lasts weeks, and they would stay for all of it.
func (c *leadership) forgetGrantsLocked(job string) {
	maps.DeleteFunc(c.adopted, func(k compute.Chunk, _ uint64) bool { return k.Job == job })
	for node, gs := range c.granted {
		kept := gs[:0]
		for _, g := range gs {
			if g.job != job {
				kept = append(kept, g)
			}
		}
		if len(kept) == 0 {
			delete(c.granted, node)
		} else {
			c.granted[node] = kept
		}
	}
}

// leaseDone gathers the results of one lease in a sync request: a lease of a job with
// chunk_units comes back as one result per chunk.
type leaseDone struct {
	lease  uint64
	ranges []compute.Range
}

// addDone files r under its lease.
func addDone(done []leaseDone, lease uint64, r compute.Range) []leaseDone {
	for i := range done {
		if done[i].lease == lease {
			done[i].ranges = append(done[i].ranges, r)
			return done
		}
	}
	return append(done, leaseDone{lease: lease, ranges: []compute.Range{r}})
}

// prefix is the contiguous run of the lease's results from the lowest start: what the scheduler
// completes (a part beyond a gap, handed in after a pause, is committed all the same).
func (d leaseDone) prefix() compute.Range {
	rs := d.ranges
	if len(rs) > 1 {
		rs = slices.Clone(rs)
		slices.SortFunc(rs, func(a, b compute.Range) int { return cmp.Compare(a.Start, b.Start) })
	}
	p := rs[0]
	for _, r := range rs[1:] {
		if r.Start != p.End {
			break
		}
		p.End = r.End
	}
	return p
}
