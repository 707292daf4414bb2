package compute

import "time"

// Leases coming back to the scheduler (docs/design.md §3): progress, completion of the whole
// range or a prefix, failure, a node gone, deadlines, results accepted, orphans requeued, and
// leases of an earlier term adopted after a leader change.

// Progress records that a lease's node has finished doneUnits of its range (a prefix), which
// pushes its deadline forward: a slow but live node is not mistaken for a dead one. It reports
// whether the lease is still current (false: it expired or was cancelled; the worker may stop).
func (s *Scheduler) Progress(id uint64, doneUnits uint64, now time.Time) bool {
	l, ok := s.leases[id]
	if !ok {
		return false
	}
	l.done = min(max(l.done, doneUnits), l.Range.Len())
	l.lastProg = now
	elapsed := now.Sub(l.Issued).Seconds()
	if l.done > 0 && elapsed > 0 {
		rate := float64(l.done) / elapsed
		left := time.Duration(float64(l.Range.Len()-l.done) / rate * float64(time.Second))
		if d := s.deadline(now, left); d.After(l.Deadline) {
			l.Deadline = d
		}
	}
	return true
}

// Complete records that a lease's result arrived (the coordinator then commits it). It updates
// the node's rate and returns the lease, and the twin lease that lost, as EventCancelled. ok is
// false for an unknown lease (expired, cancelled, or from another leader): the coordinator may
// still commit such a result — the job state accepts it only if its range is not accepted yet —
// and then call Accepted.
func (s *Scheduler) Complete(id uint64, now time.Time) (done Lease, cancelled []Event, ok bool) {
	l, ok := s.leases[id]
	if !ok {
		return Lease{}, nil, false
	}
	return s.CompletePrefix(id, l.Range, now)
}

// CompletePrefix records that a lease's result arrived for done, the finished prefix of its
// range: a worker that paused or stopped hands in what it computed and nothing more. The node's
// rate is credited with done only, and the rest of the range, [done.End, end), is pending again
// at once; a twin (backup or backed-up) is cancelled, as its result for the whole range would
// overlap the prefix. done equal to the lease's range is Complete. A done that is not a prefix of
// the range (a confused or hostile worker) requeues the whole range: whatever of it gets
// committed is removed again by Accepted. ok is false for an unknown lease, as for Complete.
func (s *Scheduler) CompletePrefix(id uint64, done Range, now time.Time) (lease Lease, cancelled []Event, ok bool) {
	l, ok := s.leases[id]
	if !ok {
		return Lease{}, nil, false
	}
	if done.Start != l.Range.Start || done.End > l.Range.End || done.End < done.Start {
		s.requeue(l)
		return l.Lease, nil, true
	}
	n := s.node(l.Node)
	began := l.Issued
	if n.lastDone.After(began) {
		began = n.lastDone
	}
	n.lastDone = now
	// An adopted chunk's computing began before its Issued: counted from it, a chunk adopted
	// near its end gave the node a rate many times its own, and its next chunks as many times
	// the chunk target.
	if secs := now.Sub(began).Seconds(); secs > 0 && done.Len() > 0 && !l.adopted {
		n.rate(l.Kind, now).add(float64(done.Len())*l.unitWork, secs, s.cfg.RateWindow)
	}
	twin := l.twin
	s.drop(l)
	if twin != nil {
		// With the prefix committed, the twin's result for the whole range would overlap it and
		// be rejected: cancel the twin, and the rest goes back as for a lone lease.
		s.drop(twin)
		cancelled = append(cancelled, Event{EventCancelled, twin.Lease})
	}
	if rest := (Range{Start: done.End, End: l.Range.End}); !rest.Empty() {
		if j := s.jobs[l.Job]; j != nil {
			j.pending.Add(rest)
		}
	}
	return l.Lease, cancelled, true
}

// Orphans returns the parts of unaccepted (a job's work not yet accepted in the replicated job
// state) that are neither pending nor covered by a lease: work nobody would ever compute. Every
// path that drops a lease puts its unfinished range back, so orphans should only be transient (a
// result between Complete and Accepted while it commits); the coordinator requeues ranges that
// stay orphaned, so that a bug in that bookkeeping costs a few seconds, never a stalled job.
func (s *Scheduler) Orphans(job string, unaccepted []Range) []Range {
	j := s.jobs[job]
	if j == nil {
		return nil
	}
	var o RangeSet
	for _, r := range unaccepted {
		o.Add(r)
	}
	for _, r := range j.pending.Ranges() {
		o.Remove(r)
	}
	for _, l := range j.leases {
		o.Remove(l.Range)
	}
	return o.Ranges()
}

// Requeue makes rs pending again (orphans, see Orphans); parts already pending or leased are
// left alone.
func (s *Scheduler) Requeue(job string, rs []Range) {
	j := s.jobs[job]
	if j == nil {
		return
	}
	for _, r := range s.Orphans(job, rs) {
		j.pending.Add(r)
	}
}

// Accepted tells the scheduler that r of job was committed, whichever lease (or earlier
// leader's) computed it: r is no longer pending, and the leases that reach into it are dropped
// (each returned as an EventCancelled), since the job state refuses any result overlapping r: a
// backup twin that lost, a lease adopted from before a leader change, or one cut from the range
// of an expired lease whose node ran on and handed it in first. The part of a dropped lease
// outside r is pending again at once: left to run, such a lease computed for a refused result,
// and that part lay orphaned until the coordinator's repair pass.
func (s *Scheduler) Accepted(job string, r Range) []Event {
	j := s.jobs[job]
	if j == nil {
		return nil
	}
	j.pending.Remove(r)
	// Usually no lease overlaps r (its own lease ended with Complete): find the ones that do
	// without sorting every lease of the job, once per accepted chunk.
	var gone map[uint64]*lease
	for id, l := range j.leases {
		if r.Overlaps(l.Range) {
			if gone == nil {
				gone = map[uint64]*lease{}
			}
			gone[id] = l
		}
	}
	var ev []Event
	for _, l := range sortedLeases(gone) {
		s.drop(l)
		ev = append(ev, Event{EventCancelled, l.Lease})
		if !l.Backup { // a backup's twin, with the same range, is in gone too: its rest goes back once
			rest := NewRangeSet(l.Range)
			rest.Remove(r)
			for _, p := range rest.Ranges() {
				j.pending.Add(p)
			}
		}
	}
	return ev
}

// Fail returns a lease's range to the pending work (the worker reported an error, or the
// coordinator could not commit its result). A range still covered by a live twin is not requeued.
func (s *Scheduler) Fail(id uint64) bool {
	l, ok := s.leases[id]
	if !ok {
		return false
	}
	s.requeue(l)
	return true
}

func (s *Scheduler) requeue(l *lease) {
	twin := l.twin
	s.drop(l)
	if twin != nil {
		// The twin keeps the range; it is no longer a backup of anything.
		if twin.Backup {
			twin.Backup = false
			if j := s.jobs[twin.Job]; j != nil {
				j.inflight += twin.Range.Len()
			}
		}
		return
	}
	if j := s.jobs[l.Job]; j != nil {
		j.pending.Add(l.Range)
	}
}

// NodeGone requeues every lease of a node that disconnected or left, at once (not after a
// deadline). The node's rate estimates are kept: it may come back.
func (s *Scheduler) NodeGone(node string, now time.Time) []Event {
	n := s.nodes[node]
	if n == nil {
		return nil
	}
	var ev []Event
	for _, l := range sortedLeases(n.leases) {
		s.requeue(l)
		ev = append(ev, Event{EventRequeued, l.Lease})
	}
	return ev
}

// Tick expires leases whose deadline has passed, returning them as EventExpired; their ranges
// are pending again. Call it about once a second.
func (s *Scheduler) Tick(now time.Time) []Event {
	var ev []Event
	for _, l := range sortedLeases(s.leases) {
		if now.After(l.Deadline) {
			s.requeue(l)
			ev = append(ev, Event{EventExpired, l.Lease})
		}
	}
	return ev
}

// Adopt makes a chunk that node is already computing, under a lease of a
// previous coordinator, a lease of this scheduler: a new leader learns of
// the chunks in flight from its workers instead of handing their ranges out
// a second time. It succeeds only if r is wholly pending in job (nobody
// else holds or has finished any of it). Its completion credits no rate: the node began it
// before this scheduler knew of it.
func (s *Scheduler) Adopt(node, job string, r Range, now time.Time) (Lease, bool) {
	j := s.jobs[job]
	if j == nil || r.Empty() || !j.pending.Covers(r) {
		return Lease{}, false
	}
	n := s.node(node)
	if len(n.leases) >= s.cfg.MaxLeasesPerNode {
		return Lease{}, false
	}
	j.pending.Remove(r)
	l := &lease{Lease: Lease{ID: s.newID(), Chunk: Chunk{Job: job, Range: r}, Kind: j.kind, Node: node, Issued: now},
		unitWork: j.unitWork, adopted: true}
	if rate := n.rates[j.kind].rate(); rate > 0 {
		l.Expected = l.takes(r.Len(), rate)
		l.Deadline = s.deadline(now, l.Expected)
	} else {
		l.Probe = true // its rate is unknown here: deadline as for a probe
		l.Deadline = now.Add(s.cfg.ProbeTimeout)
	}
	j.started = true
	s.add(l)
	return l.Lease, true
}
