package work

import (
	"context"
	"slices"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// reconcile aligns the scheduler with the replicated job state: new jobs
// are added with their pending ranges (all minus accepted), finished,
// cancelled and deleted ones removed.
func (c *leadership) reconcile(now time.Time) {
	gen, subs := c.co.gen.Load(), c.co.subs.Load()
	var unfinished []compute.UnfinishedJob
	var newest uint64
	if nj, ok := c.cfg.Jobs.(NewJobs); ok {
		unfinished, newest = nj.UnfinishedSince(0)
	} else {
		unfinished = c.cfg.Jobs.Unfinished()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seenGen, c.seenSubs, c.lastSeq, c.recAt = gen, subs, newest, now
	live := make(map[string]bool, len(unfinished))
	for _, u := range unfinished {
		live[u.ID] = true
		c.schedule(u)
	}
	for id := range c.jobs {
		if !live[id] {
			c.sched.RemoveJob(id)
			delete(c.jobs, id)
			c.forgetGrantsLocked(id)
		}
	}
	for id := range c.faults {
		if !live[id] {
			delete(c.faults, id) // a term lasts weeks: each failed or deleted job's entry stayed
		}
	}
	if now.After(c.repairAt) {
		c.repairAt = now.Add(repairEvery)
		c.repairLocked(unfinished)
	}
	if c.cfg.Audits != nil {
		c.refreshAuditsLocked(now)
		c.challenge()
	}
}

// reconcileNew takes in the jobs submitted since the last reconcile, when nothing else changed
// (JobSubmitted): a burst of one-chunk jobs would otherwise read every unfinished job's pending
// ranges once per submit. Without NewJobs it is a full reconcile.
func (c *leadership) reconcileNew(now time.Time) {
	nj, ok := c.cfg.Jobs.(NewJobs)
	if !ok {
		c.reconcile(now)
		return
	}
	c.mu.Lock()
	subs, after := c.co.subs.Load(), c.lastSeq
	c.mu.Unlock()
	added, newest := nj.UnfinishedSince(after)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastSeq != after {
		return // a full reconcile ran meanwhile
	}
	c.seenSubs, c.lastSeq, c.recAt = subs, newest, now
	for _, u := range added {
		c.schedule(u)
	}
	if c.cfg.Audits != nil {
		c.refreshAuditsLocked(now)
		c.challenge()
	}
}

// repairLocked requeues work that nobody will compute: unaccepted ranges of
// a job that are neither pending nor leased, in this pass and in the one
// before (a result being committed is orphaned only briefly). Every path
// that drops a lease should put its unfinished range back; this makes a
// slip in that bookkeeping cost repairEvery, not a job that never ends.
func (c *leadership) repairLocked(unfinished []compute.UnfinishedJob) {
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

func (c *leadership) tick(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.sched.Tick(now) {
		c.log.Info("lease expired", "lease", ev.Lease.ID, "node", ev.Lease.Node, "job", ev.Lease.Job, "range", ev.Lease.Range)
		c.expired[ev.Lease.ID] = expiredLease{node: ev.Lease.Node, job: ev.Lease.Job, rng: ev.Lease.Range}
	}
	limit := workerSilence
	if len(c.jobs) == 0 {
		limit = idleWorkerSilence // its workers sync only every idleSyncEvery
	}
	for node, seen := range c.lastSeen {
		if c.exchanging[node] > 0 {
			continue // waiting on its exchange (a slow commit), not silent
		}
		if c.busyAt.After(seen) {
			seen = c.busyAt // idle until a job came: its workers, woken, sync now
		}
		if now.Sub(seen) > limit {
			c.nodeGoneLocked(node, now)
		}
	}
}

func (c *leadership) nodeGone(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeGoneLocked(node, now)
}

func (c *leadership) nodeGoneLocked(node string, now time.Time) {
	if _, ok := c.lastSeen[node]; !ok {
		return
	}
	delete(c.lastSeen, node)
	delete(c.paused, node)
	audits := 0
	for id, l := range c.auditLeases {
		if l.node == node {
			delete(c.auditLeases, id) // another node takes it now, not after its deadline
			audits++
		}
	}
	delete(c.offsets, node)
	for id, e := range c.expired {
		if e.node == node {
			delete(c.expired, id)
		}
	}
	if evs := c.sched.NodeGone(node, now); len(evs) > 0 {
		c.log.Info("node gone: chunks requeued", "node", node, "chunks", len(evs), "audits", audits)
	} else {
		c.log.Debug("node gone", "node", node, "audits", audits) // once per silence: lastSeen is gone
	}
}

// evict drops finished jobs past the cluster's retention or over its disk cap, if any. The time it
// commits (and every replica evicts by) is the cluster's clock, not this leader's alone: the
// median of the clocks of the nodes that synced lately, this one included, so that one node
// whose clock is off by a week cannot evict every result when it leads (docs/api.md, Cluster
// settings).
func (c *leadership) evict(ctx context.Context, now time.Time) {
	set := consensus.DefaultSettings()
	if c.cfg.Settings != nil {
		set = c.cfg.Settings()
	}
	cmd := compute.Evict{Now: c.clusterNow(now), Retention: set.Retention, DiskCap: set.DiskCap}
	if c.cfg.Jobs != nil && !c.cfg.Jobs.Evictable(cmd) {
		return // nothing to drop: no entry (an idle cluster would append and fsync one a minute)
	}
	if _, err := c.cfg.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
		c.log.Warn("evict finished jobs", "err", err)
	}
}

// clusterNow is now corrected by the lower median of the offsets of the nodes' clocks
// (this node's is 0); with two clocks it is the earlier one, which evicts less.
func (c *leadership) clusterNow(now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	offs := c.clockOffsetsLocked()
	return now.Add(offs[(len(offs)-1)/2])
}

// clockOffsetsLocked lists, sorted, the offsets of the clocks of the nodes that synced lately
// from this leader's, its own (0) included.
func (c *leadership) clockOffsetsLocked() []time.Duration {
	offs := []time.Duration{0}
	for node, off := range c.offsets {
		if _, ok := c.lastSeen[node]; ok && node != c.cfg.Self.String() {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	return offs
}

// stampLocked is the time the leader writes into the commands it proposes (a job started,
// results accepted, audits, faults, failures) and publishes in its activity: now corrected by
// the median offset of the clocks of the nodes that synced lately, this one's included; with
// an even count, the middle one nearer this leader's own clock. A leader whose clock is off by
// hours or decades (a Raspberry Pi without an RTC before NTP answers) among nodes that agree
// then stamps what they would: a job's times do not jump by decades when leadership moves, and
// durations between stamps of different leaders do not turn negative (docs/design.md §2).
func (c *leadership) stampLocked(now time.Time) time.Time {
	offs := c.clockOffsetsLocked()
	off := offs[(len(offs)-1)/2]
	if hi := offs[len(offs)/2]; hi.Abs() < off.Abs() {
		off = hi
	}
	return now.Add(off).UTC()
}

// stamp is stampLocked for a caller that does not hold c.mu.
func (c *leadership) stamp(now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stampLocked(now)
}

// schedule hands an unfinished job to the scheduler unless it already has it: the full
// reconcile and the read of newly submitted jobs both add jobs this way.
func (c *leadership) schedule(u compute.UnfinishedJob) {
	if c.jobs[u.ID] {
		return
	}
	if err := c.sched.AddJob(u.ID, u.Spec, u.Pending, u.State == compute.StateRunning); err != nil {
		c.log.Error("add job to scheduler", "job", u.ID, "err", err)
		return
	}
	if len(c.jobs) == 0 {
		c.busyAt = time.Now()
	}
	c.jobs[u.ID] = true
	c.log.Info("scheduling job", "job", u.ID, "kind", u.Spec.Kind, "pending_ranges", len(u.Pending))
}
