package work

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// The coordinator's side of audits (docs/audits.md). The replicated job state
// says which chunks wait for their challenge and which audits are to run;
// the coordinator proposes the challenges (with randomness drawn after the
// chunks' results committed) and leases the audits like chunks: to another
// node than the chunk's (another architecture when one is there), with a
// deadline, again after a leader change, since they live in the state.

// Audit timings.
const (
	challengeBatch = 4096 // chunks per Challenge command
	// auditDeadline is how long an audit lease may go unanswered beyond auditDeadlineFactor times
	// its length (auditLeaseDeadline) before it goes to another node.
	auditDeadline = 2 * time.Minute
	// auditDeadlineFactor: as the scheduler's DeadlineFactor for chunk leases.
	auditDeadlineFactor = 3
	// challengeWait is how long committed chunks wait for the next Results entry to carry
	// their Challenge (Results.Challenge) before they get a Challenge entry of their own (a
	// job's last chunks). A Challenge entry per commit cost the log an entry per chunk.
	challengeWait = 100 * time.Millisecond
	// carriedMax bounds the chunks a Results entry challenges (a few kB of references).
	carriedMax = 1024
	// auditSlowdown: a node whose speed for a kind is below 1/auditSlowdown of the fastest live
	// node that may take an audit does not take audits longer than a chunk target there (a
	// board given a fast desktop's chunk to recompute would hold its job's end).
	auditSlowdown = 2
)

// auditLeaseBase marks lease IDs of audits: an audit with ID n is lease
// auditLeaseBase+n, which the scheduler's chunk leases never reach.
const auditLeaseBase = 1 << 62

// AuditState is what the coordinator reads of audits in the replicated job
// state (compute.JobState).
type AuditState interface {
	Unchallenged(max int) []compute.ChunkRef
	AuditTasks() []compute.AuditTask
	Quarantined(node string) bool
	AuditPolicy() audit.Policy
}

// auditLease is an audit leased to a node.
type auditLease struct {
	node     string
	deadline time.Time
	expected time.Duration // at the node's measured rate (0: unknown)
}

// setPolicy makes the replicated audit policy the configured one, if they
// differ (the leader's configuration wins).
func (c *leadership) setPolicy(ctx context.Context) {
	want := c.cfg.AuditPolicy.WithDefaults()
	if c.cfg.Audits == nil || c.cfg.Audits.AuditPolicy() == want {
		return
	}
	if _, err := c.cfg.Apply(ctx, compute.AuditPolicy{Policy: want}); err != nil && ctx.Err() == nil {
		c.log.Warn("set the audit policy", "err", err)
		return
	}
	c.log.Info("audit policy set", "trust_after", want.TrustAfter, "floor", want.Floor, "trusted_share", want.TrustedShare, "quarantine_after", want.QuarantineAfter)
}

// challenge asks the challenger to propose Challenges for the committed
// chunks that have none yet.
func (c *leadership) challenge() {
	select {
	case c.challenges <- struct{}{}:
	default: // a kick is pending: it covers these chunks too
	}
}

// challenger proposes a Challenge, with randomness drawn now, for the
// committed chunks that have none yet once challenge kicked it and no
// Results entry was proposed for challengeWait (while they flow, each
// carries the challenge of the chunks before it), until none is left (one
// command per challengeBatch chunks).
func (c *leadership) challenger(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.challenges:
		}
		// While Results entries flow, each carries the challenge of the chunks before it:
		// wait for challengeWait without one.
		for {
			quiet := time.Since(time.Unix(0, c.resultsAt.Load()))
			if quiet >= challengeWait || !c.leasesOut() {
				break // quiet, or no lease out: no Results entry is on its way to carry it
			}
			t := time.NewTimer(challengeWait - quiet)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-c.challenges: // a commit meanwhile: read below
		default:
		}
		for refs := c.cfg.Audits.Unchallenged(challengeBatch); len(refs) > 0; refs = c.cfg.Audits.Unchallenged(challengeBatch) {
			var seed audit.Seed
			rand.Read(seed[:]) // never fails (crypto/rand)
			unaudited, wait := c.noAuditor(time.Now())
			if wait > 0 {
				time.AfterFunc(wait, c.challenge) // the term's nodes have not all synced yet
				break
			}
			raw, err := c.cfg.Apply(ctx, compute.Challenge{Time: time.Now(), Seed: seed, Items: refs, Unaudited: unaudited})
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("challenge committed chunks", "chunks", len(refs), "err", err)
				}
				break // the next kick (a commit, or reconcile) tries again
			}
			c.auditsDirty.Store(true)
			c.auditOutcome(raw, "")
		}
	}
}

// leasesOut reports whether chunk leases are out (their results will come).
func (c *leadership) leasesOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched.InFlight() > 0
}

// noAuditor reports whether fewer than two live nodes may audit: then no
// chunk can be audited by another node, and waiting for one would hold every
// job of a one-machine cluster forever. Its chunks count unaudited, as
// sampled-out ones do; a second machine brings audits back. In a term's
// first workerSilence the nodes that sync are not all known yet: wait says
// how long to hold the challenge back rather than decide on too few.
func (c *leadership) noAuditor(now time.Time) (unaudited bool, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for node := range c.lastSeen {
		if !c.cfg.Audits.Quarantined(node) {
			n++
		}
	}
	if n >= 2 {
		return false, 0
	}
	if known := c.began.Add(workerSilence); now.Before(known) {
		return false, known.Sub(now)
	}
	return true, 0
}

// waiveAfter is how long a node must have been the only live node that may audit before the
// audits of its chunks are waived (compute.AuditWaive). A machine that sleeps a while (a lid
// closed) comes back and runs them; one that left for good must not hold every job that has an
// audit of the other's chunks open for ever (nobody else may audit a node's own chunks).
const waiveAfter = 30 * time.Second

// loneWatch follows how long one node has been the only live one.
type loneWatch struct {
	node  string
	since time.Time
}

// loneNodeLocked returns the only live node that is not quarantined, and whether it has been
// alone for waiveAfter (counted from the term's first workerSilence, when its nodes are known).
func (c *leadership) loneNodeLocked(now time.Time) (string, bool) {
	lone, n := "", 0
	for node := range c.lastSeen {
		if !c.cfg.Audits.Quarantined(node) {
			lone, n = node, n+1
		}
	}
	if n != 1 || now.Before(c.began.Add(workerSilence)) {
		c.alone = loneWatch{}
		return "", false
	}
	if c.alone.node != lone {
		c.alone = loneWatch{node: lone, since: now}
	}
	return lone, now.Sub(c.alone.since) >= waiveAfter
}

// waiveLoneAudits proposes an AuditWaive for the open block audits of the only live node's
// chunks once it has been alone for waiveAfter: the other machine of a two-machine cluster left
// while audits of this one's chunks were open, and no one else may run them. Chunks committed
// while it is alone are already cleared unaudited (noAuditor); this clears the audits chosen
// before. Disputes wait for a third node.
func (c *leadership) waiveLoneAudits(ctx context.Context, now time.Time) {
	if c.cfg.Audits == nil {
		return
	}
	c.mu.Lock()
	node, due := c.loneNodeLocked(now)
	since := c.alone.since
	c.mu.Unlock()
	if !due || !slices.ContainsFunc(c.cfg.Audits.AuditTasks(), func(t compute.AuditTask) bool { return t.Node == node && !t.Full }) {
		return
	}
	raw, err := c.cfg.Apply(ctx, compute.AuditWaive{Node: node, Time: now})
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("waive the audits of the only live node", "node", node, "err", err)
		}
		return
	}
	c.auditsDirty.Store(true)
	var out compute.AuditOutcome
	if err := json.Unmarshal(raw, &out); err == nil {
		c.log.Warn("audits waived: no other node has been live to run them", "node", node, "audits", out.Waived,
			"alone_for", now.Sub(since).Round(time.Second))
	}
	c.auditOutcome(raw, "")
}

// carriedChallenge is a Challenge for a Results entry to carry, with
// randomness drawn now, for chunks committed by earlier entries (nil: none
// waits, or the term's nodes have not all synced yet).
func (c *leadership) carriedChallenge() *compute.Challenge {
	refs := c.cfg.Audits.Unchallenged(carriedMax)
	if len(refs) == 0 {
		return nil
	}
	unaudited, wait := c.noAuditor(time.Now())
	if wait > 0 {
		return nil // the challenger tries again once the wait is over
	}
	ch := &compute.Challenge{Items: refs, Unaudited: unaudited}
	rand.Read(ch.Seed[:]) // never fails (crypto/rand)
	return ch
}

// auditOutcome logs what an audit command changed and requeues what it
// took back.
func (c *leadership) auditOutcome(raw json.RawMessage, auditor string) {
	var out compute.AuditOutcome
	if err := json.Unmarshal(raw, &out); err != nil {
		c.log.Warn("decode audit outcome", "err", err)
		return
	}
	c.applyOutcome(out, auditor)
}

// applyOutcome logs what an audit command (or the Challenge a Results
// entry carried) changed and requeues what it took back.
func (c *leadership) applyOutcome(out compute.AuditOutcome, auditor string) {
	if out.Determinism {
		c.log.Error("DETERMINISM BUG: two trusted nodes computed different bits for the same blocks; a third node settles it",
			"auditor", auditor)
	} else if out.Mismatch {
		c.log.Warn("audit mismatch: the whole chunk goes to a third node", "auditor", auditor)
	}
	for _, n := range out.Failed {
		c.log.Warn("audit failed", "node", n)
	}
	for _, n := range out.Quarantined {
		c.log.Warn("node quarantined: it gets no work and no vote until `hydra trust reset`", "node", n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range out.Finished {
		c.sched.RemoveJob(id)
		delete(c.jobs, id)
		c.forgetGrantsLocked(id)
		c.log.Info("job done", "job", id)
	}
	// A failed node's results are requeued in done jobs too, which run again (the job this
	// command finished among them): the scheduler no longer has them, and with no other job
	// scheduled no reconcile would run to take them in again.
	reopened := false
	for _, r := range out.Requeued {
		if c.jobs[r.Job] {
			c.sched.Requeue(r.Job, []compute.Range{r.Range})
		} else {
			reopened = true
		}
	}
	if len(out.Requeued) > 0 {
		c.log.Info("results of a failed node requeued", "chunks", len(out.Requeued))
	}
	if reopened {
		c.co.JobsChanged() // reconcile: the jobs that run again are scheduled
	}
}

// auditRefreshEvery bounds how often a busy coordinator rereads the audits
// to run from the job state (each Challenge and Audit changes them).
const auditRefreshEvery = 50 * time.Millisecond

// refreshAuditsIfDirtyLocked rereads the audits to run if the job state's
// changed since the last read (at most every auditRefreshEvery).
func (c *leadership) refreshAuditsIfDirtyLocked(now time.Time) {
	if now.Sub(c.auditsAt) >= auditRefreshEvery && c.auditsDirty.Load() {
		c.refreshAuditsLocked(now)
	}
}

// refreshAuditsLocked reloads the audits to run and drops leases of audits
// that ended or expired.
func (c *leadership) refreshAuditsLocked(now time.Time) {
	c.auditsDirty.Store(false)
	c.auditsAt = now
	c.auditTasks = c.cfg.Audits.AuditTasks()
	open := make(map[uint64]bool, len(c.auditTasks))
	for _, t := range c.auditTasks {
		open[t.ID] = true
	}
	for id, l := range c.auditLeases {
		if !open[id] || now.After(l.deadline) {
			delete(c.auditLeases, id)
		}
	}
}

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

// auditLiveLocked reports whether lease id is an audit still leased to node.
func (c *leadership) auditLiveLocked(id uint64, node string) bool {
	l, ok := c.auditLeases[id-auditLeaseBase]
	return ok && l.node == node
}

// releaseAuditLocked gives an audit lease back (the worker could not run it).
func (c *leadership) releaseAuditLocked(id uint64, node string) {
	if c.auditLiveLocked(id, node) {
		delete(c.auditLeases, id-auditLeaseBase)
	}
}

// auditsAnswered settles audit answers after their commands were proposed
// (raws and errs: their results): answered, or refused (a lease from before
// a dispute, say), either way an audit is no longer its auditor's, and the
// tasks are reread before it is leased again, so that no stale task goes out
// twice. It returns an error per answer.
func (c *leadership) auditsAnswered(audits []pendingAudit, raws []json.RawMessage, errs []error) []error {
	if len(audits) == 0 {
		return nil
	}
	answered := make(map[uint64]bool, len(audits))
	c.mu.Lock()
	for _, a := range audits {
		if l := c.auditLeases[a.r.Audit.ID]; l != nil && l.node == a.node {
			delete(c.auditLeases, a.r.Audit.ID)
		}
		answered[a.r.Audit.ID] = true
	}
	c.auditTasks = slices.DeleteFunc(c.auditTasks, func(t compute.AuditTask) bool { return answered[t.ID] })
	c.auditsDirty.Store(true)
	c.mu.Unlock()
	out := make([]error, len(audits))
	for i, a := range audits {
		if errs[i] != nil {
			out[i] = fmt.Errorf("commit audit %d: %w", a.r.Audit.ID, errs[i])
			continue
		}
		c.auditOutcome(raws[i], a.node)
	}
	return out
}
