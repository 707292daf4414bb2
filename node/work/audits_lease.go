package work

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// Who runs which audit (docs/audits.md): the rules a coordinator leases audits by (another
// node than the chunk's, another architecture first, fast enough, the soonest to finish), and
// how an exchange with nothing in hand waits for audits on their way.

// Several audits in hand: a node may hold up to maxAuditsHeld audits at once while together they
// are expected to take less than shortAudits at its measured rate (the audits of a job of tiny
// chunks take microseconds each: one at a time, each cost an exchange and a raft commit, and a
// job of 30,000 chunks waited seconds for its last audits). Otherwise one at a time, as a long
// audit held in a queue would hold up its job.
const (
	maxAuditsHeld = 8                      // as compute's MaxShortLeases (the worker's shortDepth)
	shortAudits   = 100 * time.Millisecond // as compute's ShortQueue
)

// auditWait bounds how long an exchange of a worker with nothing in hand waits for audits that
// are on their way (chunks leased or committed, their Challenge not yet): without it the worker
// would ask again only after syncEvery, and a job's last audits would wait for that.
const auditWait = 250 * time.Millisecond

// emptyHanded reports whether a worker holds nothing and has nothing to hand in: then its
// exchange may wait for audits (awaitAuditsLocked) without holding anything up.
func emptyHanded(req *syncRequest) bool {
	return len(req.Leases) == 0 && len(req.Held) == 0 && len(req.Results) == 0
}

// awaitAuditsLocked waits, at most auditWait, for audits node may run while chunks wait for
// their Challenge or chunk leases are out (at a job's end: the last chunks of the others), and
// leases them (at most max). A job change ends the wait (there may be chunks to lease). c.mu is
// released while it waits.
func (c *leadership) awaitAuditsLocked(ctx context.Context, node string, max int) []lease {
	end := time.Now().Add(c.auditWait)
	timer := time.NewTimer(c.auditWait)
	defer timer.Stop()
	for {
		ready := c.auditsDirty.changed() // before the flag is read: a change after it closes ready
		jobs := c.jobsSignal.changed()   // the same for changedLocked
		now := time.Now()
		if c.auditsDirty.Load() {
			c.refreshAuditsLocked(now)
		}
		if out := c.leaseAuditsLocked(node, now, max); len(out) > 0 {
			return out
		}
		if now.After(end) || ctx.Err() != nil || c.ctx.Err() != nil || c.changedLocked() {
			return nil // a job changed: the worker's next exchange may find chunks
		}
		inFlight := c.sched.InFlight() > 0 // their results will be challenged
		c.auditIdle[node]++                // free now: soonestLocked counts it so
		c.mu.Unlock()
		coming := inFlight || len(c.cfg.Audits.Unchallenged(1)) > 0
		if coming {
			select {
			case <-ready:
			case <-jobs:
			case <-timer.C:
				end = time.Time{} // one more look, then give up
			case <-ctx.Done():
			case <-c.ctx.Done():
			}
		}
		c.mu.Lock()
		if c.auditIdle[node]--; c.auditIdle[node] <= 0 {
			delete(c.auditIdle, node)
		}
		if !coming {
			return nil
		}
	}
}

// auditSignal says that something changed since the coordinator last looked (a flag: the audits
// to run in the job state, or the jobs), and wakes the exchanges waiting for audits
// (awaitAuditsLocked).
type auditSignal struct {
	atomic.Bool
	mu   sync.Mutex
	wake chan struct{} // closed by the next Store(true)
}

// Store sets the flag; true also wakes the waiters.
func (s *auditSignal) Store(v bool) {
	s.Bool.Store(v)
	if !v {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// changed returns a channel closed when the flag is next set.
func (s *auditSignal) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// leaseAuditsLocked hands node up to max audits it may run, if some are waiting: never its own
// chunk or a dispute it is party to, a chunk of another architecture's node first when one is
// live, more than one only while they are short (maxAuditsHeld, shortAudits), and one that is
// not short only if no other node would finish it sooner (soonestLocked).
func (c *leadership) leaseAuditsLocked(node string, now time.Time, max int) []lease {
	held, sum := 0, time.Duration(0)
	short := true
	busy := make(map[string]bool, len(c.auditLeases)) // nodes with an audit in hand
	for _, l := range c.auditLeases {
		busy[l.node] = true
		if l.node == node {
			held++
			sum += l.expected
			short = short && l.expected > 0
		}
	}
	var out []lease
	var free map[string]time.Time // when each node is done with what it holds: read once, if needed
	for _, t := range c.auditTasks {
		if len(out) >= max || held > 0 && (!short || held >= maxAuditsHeld) {
			break
		}
		if _, taken := c.auditLeases[t.ID]; taken || t.Node == node || t.Auditor == node {
			continue
		}
		if !c.archFitsLocked(node, t, busy) || !c.speedFitsLocked(node, t) {
			continue
		}
		expected := c.auditExpectedLocked(node, t)
		if held > 0 && (expected <= 0 || sum+expected >= shortAudits) {
			continue // not short enough to queue behind the audits in hand
		}
		if expected > shortAudits {
			if free == nil {
				free = c.freeAtLocked(now)
			}
			if !c.soonestLocked(node, t, expected, now, free) {
				continue // another node will be free sooner: this one takes a chunk instead
			}
		}
		c.auditLeases[t.ID] = &auditLease{node: node, deadline: c.auditLeaseDeadline(now, expected), expected: expected}
		held++
		sum += expected
		short = short && expected > 0
		out = append(out, lease{
			ID: auditLeaseBase + t.ID, Term: c.term, Chunk: compute.Chunk{Job: t.Job, Range: t.Chunk}, Spec: t.Spec,
			Audit: &auditWork{ID: t.ID, Full: t.Full, Spans: t.Spans},
		})
	}
	return out
}

// auditLeaseDeadline is when an audit leased at now, expected to take its node expected (0:
// unknown), goes to another node if unanswered: auditDeadline after auditDeadlineFactor times its
// length, or a chunk target's where that is unknown or longer (an audit recomputes at most a
// chunk, sized to take its own node a chunk target). Audits report no progress: a fixed deadline
// cancelled every audit longer than it (at --chunk-target 10m, a new node's chunks, audited
// whole) before it could be answered, and leased it again from the start, for ever.
func (c *leadership) auditLeaseDeadline(now time.Time, expected time.Duration) time.Time {
	return now.Add(auditDeadline + auditDeadlineFactor*max(expected, c.chunkTarget))
}

// longAuditHeldLocked reports whether node holds an audit that is not short (over shortAudits
// at its rate): then it is leased no chunk until it has answered it. The scheduler sizes a chunk,
// and caps it near a job's end, as if it started when leased; queued behind a long audit it
// would start seconds later, and the job's last chunk would end that much after the others
// (bench-cluster hetero: the 40 % node audited 2.4 s before its last chunk, which ended the job
// 1 s after every other node was done). The node asks again when it hands in the answer.
func (c *leadership) longAuditHeldLocked(node string) bool {
	for _, l := range c.auditLeases {
		if l.node == node && l.expected > shortAudits {
			return true
		}
	}
	return false
}

// freeAtLocked is when each node that holds leases should be done with them at its measured
// rate: a worker runs what it holds in the order it was leased, so an audit leased to it now
// starts after all of it. A lease of unknown duration (a probe) counts a chunk target; one
// overdue counts as ending now.
func (c *leadership) freeAtLocked(now time.Time) map[string]time.Time {
	free := map[string]time.Time{}
	for _, l := range c.sched.Leases() { // in ID order: the order each node was leased them
		start := free[l.Node]
		if l.Issued.After(start) {
			start = l.Issued
		}
		free[l.Node] = start.Add(cmp.Or(l.Expected, c.chunkTarget))
	}
	for _, a := range c.auditLeases {
		free[a.node] = later(free[a.node], now).Add(cmp.Or(a.expected, c.chunkTarget))
	}
	for n, t := range free {
		free[n] = later(t, now)
	}
	return free
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// soonestLocked reports whether node, which would take expected to run audit t after what it
// holds (free), should take it: whether no other node that may take t would finish it sooner by
// more than a tenth of expected, at its own rate after what it holds. A node that holds nothing
// is free now if its exchange waits for audits (auditIdle), else within syncEvery, when it asks
// again. Mid-job it does not matter who recomputes an audit (the work is the same, and the
// others take the job's chunks meanwhile); near the end it does: a slow node handed a fast
// node's chunk (a chunk target of the fast node's work) holds the job's end for seconds after
// everyone else is done, and the audits of the job's last chunks decide when it is done. A node
// of another architecture than the chunk's node is not passed over for one of the same
// architecture (docs/audits.md: another architecture first).
func (c *leadership) soonestLocked(node string, t compute.AuditTask, expected time.Duration, now time.Time, free map[string]time.Time) bool {
	at := func(n string) time.Time {
		if f, ok := free[n]; ok {
			return f
		}
		if c.auditIdle[n] > 0 {
			return now
		}
		return now.Add(syncEvery)
	}
	mine := at(node).Add(expected - expected/10)
	kind := compute.RateClass(t.Spec)
	cost := auditCost(t)
	owner := c.arch[t.Node]
	otherArch := owner != "" && c.arch[node] != "" && c.arch[node] != owner
	for n := range c.lastSeen {
		if n == node || !c.auditCandidateLocked(n, t) {
			continue
		}
		if otherArch && c.arch[n] == owner {
			continue
		}
		rate := c.sched.Rate(n, kind)
		if rate <= 0 {
			continue
		}
		if at(n).Add(time.Duration(cost / rate * float64(time.Second))).Before(mine) {
			return false
		}
	}
	return true
}

// auditExpectedLocked is how long node should take to recompute audit t at its measured rate
// (0: its rate for the kind is unknown).
func (c *leadership) auditExpectedLocked(node string, t compute.AuditTask) time.Duration {
	rate := c.sched.Rate(node, compute.RateClass(t.Spec))
	if rate <= 0 {
		return 0
	}
	return time.Duration(auditCost(t) / rate * float64(time.Second))
}

// auditCost is the work of audit t in the terms of a node's rate (compute.UnitWork): the units of
// its spans.
func auditCost(t compute.AuditTask) float64 {
	var units uint64
	for _, sp := range t.Spans {
		units += sp.Len()
	}
	return float64(units) * compute.UnitWork(t.Spec)
}

// archFitsLocked reports whether node should audit t: yes if its
// architecture differs from the chunk's node's, or if no node of another
// architecture that would take t (auditCandidateLocked) has no audit in hand
// (busy). (A busy node of the other architecture does not hold the audit back:
// one slow board must not become the bottleneck of every job; nor does one
// that would refuse it, paused or too slow: no node would take it then.)
func (c *leadership) archFitsLocked(node string, t compute.AuditTask, busy map[string]bool) bool {
	owner := c.arch[t.Node]
	if owner == "" || c.arch[node] != owner {
		return true
	}
	for n := range c.lastSeen {
		if !busy[n] && c.arch[n] != "" && c.arch[n] != owner && c.auditCandidateLocked(n, t) {
			return false // another architecture is free and would take it: leave it the audit
		}
	}
	return true
}

// mayAuditLocked reports whether live node n may be leased audit t at all: not the chunk's
// node nor the auditor it disputes, not paused (its owner needs the machine) and not
// quarantined.
func (c *leadership) mayAuditLocked(n string, t compute.AuditTask) bool {
	return n != t.Node && n != t.Auditor && !c.paused[n] && !c.cfg.Audits.Quarantined(n)
}

// auditCandidateLocked reports whether node n would be leased audit t if it asked: it may
// audit it and is fast enough. A node passes an audit over only for a candidate (archFitsLocked,
// soonestLocked): passed over for a node that refuses it, an audit waits for ever.
func (c *leadership) auditCandidateLocked(n string, t compute.AuditTask) bool {
	return c.mayAuditLocked(n, t) && c.speedFitsLocked(n, t)
}

// speedFitsLocked reports whether node is fast enough to audit t: yes if
// its speed for the kind is unknown, if the audit takes it at most a chunk
// target, or if no live node that may take t (not paused) is more than
// auditSlowdown times faster. A chunk is sized for its own node; recomputing a fast
// node's chunk on a board ten times slower would hold the job's end.
func (c *leadership) speedFitsLocked(node string, t compute.AuditTask) bool {
	kind := compute.RateClass(t.Spec)
	rate := c.sched.Rate(node, kind)
	if rate <= 0 {
		return true
	}
	if auditCost(t)/rate <= c.chunkTarget.Seconds() {
		return true
	}
	for n := range c.lastSeen {
		if n != node && c.mayAuditLocked(n, t) && c.sched.Rate(n, kind) > auditSlowdown*rate {
			return false
		}
	}
	return true
}
