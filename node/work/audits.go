package work

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
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

// challengeDelay is how long the challenger waits at now for the Results entries to stop:
// challengeWait after the last one was proposed, and never longer, whatever the wall clock did
// meanwhile (resultsAt is a wall time: NTP stepping this node's clock back by an hour, as when a
// board that booted at its last saved time learns the right one, would otherwise hold every
// challenge, and so every audit and every result waiting for one, for that hour).
func (c *leadership) challengeDelay(now time.Time) time.Duration {
	quiet := now.Sub(time.Unix(0, c.resultsAt.Load()))
	if quiet >= challengeWait || quiet < 0 {
		return 0
	}
	return challengeWait - quiet
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
			wait := c.challengeDelay(time.Now())
			if wait == 0 || !c.leasesOut() {
				break // quiet, or no lease out: no Results entry is on its way to carry it
			}
			t := time.NewTimer(wait)
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
			raw, err := c.cfg.Apply(ctx, compute.Challenge{Time: c.stamp(time.Now()), Seed: seed, Items: refs, Unaudited: unaudited})
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
	if !c.opAllowed(compute.OpAuditWaive) {
		return
	}
	// The cluster's clock, as every command this leader proposes: a job the waive finishes is
	// finished at this time, and retention evicts it by it (docs/design.md §2, Time).
	raw, err := c.cfg.Apply(ctx, compute.AuditWaive{Node: node, Time: c.stamp(now)})
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("waive the audits of the only live node", "node", node, "err", err)
		}
		return
	}
	c.auditsDirty.Store(true)
	var out compute.AuditOutcome
	if err := json.Unmarshal(raw, &out); err != nil {
		c.log.Warn("decode audit outcome", "err", err)
		return
	}
	c.log.Warn("audits waived: no other node has been live to run them", "node", node, "audits", out.Waived,
		"alone_for", now.Sub(since).Round(time.Second))
	c.applyOutcome(out, "")
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
	for _, n := range out.Quarantined {
		c.takeBackLocked(n, time.Now())
	}
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

// quarantinedLocked reports whether node is quarantined: it gets no work, and the job state
// refuses its results and audit answers.
func (c *leadership) quarantinedLocked(node string) bool {
	return c.cfg.Audits != nil && c.cfg.Audits.Quarantined(node)
}

// takeBackLocked requeues the chunks and audits a quarantined node holds, and forgets its
// expired leases, so that its next exchange is told to drop them all (cancelsLocked). The job
// state refuses whatever it hands in: left with it, a chunk was computed to its end for
// nothing, and its range then lay orphaned until the repair pass (a chunk target plus 3–6 s,
// and a warning of a bookkeeping slip); an audit waited for an answer that would not count.
func (c *leadership) takeBackLocked(node string, now time.Time) {
	audits := 0
	for id, l := range c.auditLeases {
		if l.node == node {
			delete(c.auditLeases, id)
			audits++
		}
	}
	for id, e := range c.expired {
		if e.node == node {
			delete(c.expired, id)
		}
	}
	if evs := c.sched.NodeGone(node, now); len(evs) > 0 || audits > 0 {
		c.log.Info("quarantined node: its chunks and audits go to others", "node", node, "chunks", len(evs), "audits", audits)
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

// opAllowed reports whether the coordinator may propose op, an op of its own initiative, now
// (CoordinatorConfig.CheckOp): not while a raft member's build does not know it, which would
// stop that member. The first refusal of a term is logged at info, and again once allowed and
// refused anew.
func (c *leadership) opAllowed(op byte) bool {
	var err error
	if c.cfg.CheckOp != nil {
		err = c.cfg.CheckOp(op)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.heldBack, op)
		return true
	}
	if !c.heldBack[op] {
		if c.heldBack == nil {
			c.heldBack = map[byte]bool{}
		}
		c.heldBack[op] = true
		c.log.Info("not proposed until every member runs a hydra that knows it", "op", fmt.Sprintf("%#02x", op), "reason", err)
	}
	return false
}
