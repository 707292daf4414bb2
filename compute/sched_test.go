package compute

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is the tests' time source: it only moves when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                    { return c.t }
func (c *fakeClock) advance(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func piJob(samples uint64) JobSpec {
	return JobSpec{Kind: KindPi, Pi: &PiParams{Samples: samples, Seed: 1}}
}

func mustLease(t *testing.T, s *Scheduler, node string, now time.Time) Lease {
	t.Helper()
	l, ok := s.Lease(node, now)
	if !ok {
		t.Fatalf("%s: no lease", node)
	}
	return l
}

// run computes a lease at rate units/s: the clock moves to its end and it completes.
func complete(t *testing.T, s *Scheduler, c *fakeClock, l Lease, rate float64) []Event {
	t.Helper()
	_, ev, ok := s.Complete(l.ID, l.Issued.Add(time.Duration(float64(l.Range.Len())/rate*float64(time.Second))))
	if !ok {
		t.Fatalf("complete %d: unknown lease", l.ID)
	}
	return ev
}

func TestProbeThenRateSizedChunks(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	if err := s.AddJob("j", piJob(1e12), []Range{{0, 1e12}}, false); err != nil {
		t.Fatal(err)
	}
	speeds := map[string]float64{"fast": 40e6, "slow": 2e6}
	for node, rate := range speeds {
		p := mustLease(t, s, node, c.now())
		if !p.Probe || p.Range.Len() != 1<<20 {
			t.Fatalf("%s: first lease %+v is not a probe", node, p)
		}
		complete(t, s, c, p, rate)
	}
	for node, rate := range speeds {
		l := mustLease(t, s, node, c.now())
		if l.Probe {
			t.Fatalf("%s: second lease is a probe", node)
		}
		got := float64(l.Range.Len()) / rate
		if got < 1.9 || got > 2.1 {
			t.Errorf("%s: chunk of %d units takes %.2f s at its rate, want ≈ 2 s", node, l.Range.Len(), got)
		}
		if l.Expected < 1900*time.Millisecond || !l.Deadline.After(c.now().Add(l.Expected)) {
			t.Errorf("%s: expected %v deadline %v", node, l.Expected, l.Deadline.Sub(c.now()))
		}
	}
}

func TestFirstLeaseMarksJobStarted(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e9), []Range{{0, 1e9}}, false)
	if l := mustLease(t, s, "a", c.now()); !l.FirstOfJob {
		t.Error("first lease not marked")
	}
	if l := mustLease(t, s, "b", c.now()); l.FirstOfJob {
		t.Error("second lease marked")
	}
}

func TestNodeVanishingRequeuesAtOnce(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e8), []Range{{0, 1e8}}, true)
	a1 := mustLease(t, s, "a", c.now())
	a2 := mustLease(t, s, "a", c.now())
	if _, ok := s.Lease("a", c.now()); ok {
		t.Fatal("a third lease for one node (limit is one computing + one queued)")
	}
	before := s.PendingUnits("j")
	ev := s.NodeGone("a", c.advance(time.Second))
	if len(ev) != 2 || ev[0].Kind != EventRequeued || ev[0].Lease.ID != a1.ID || ev[1].Lease.ID != a2.ID {
		t.Fatalf("events %+v", ev)
	}
	if got := s.PendingUnits("j"); got != before+a1.Range.Len()+a2.Range.Len() {
		t.Fatalf("pending %d, want %d", got, before+a1.Range.Len()+a2.Range.Len())
	}
	if l := mustLease(t, s, "b", c.now()); l.Range.Start != 0 {
		t.Fatalf("requeued range not handed out first: %v", l.Range)
	}
	if _, _, ok := s.Complete(a1.ID, c.now()); ok {
		t.Fatal("a lease of a departed node completed")
	}
}

func TestNodeThatNeverAnswersExpires(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{ProbeTimeout: 20 * time.Second})
	s.AddJob("j", piJob(1e8), []Range{{0, 1e8}}, true)
	mute := mustLease(t, s, "mute", c.now())
	if ev := s.Tick(c.advance(19 * time.Second)); len(ev) != 0 {
		t.Fatalf("expired before the probe timeout: %+v", ev)
	}
	ev := s.Tick(c.advance(2 * time.Second))
	if len(ev) != 1 || ev[0].Kind != EventExpired || ev[0].Lease.ID != mute.ID {
		t.Fatalf("events %+v", ev)
	}
	l := mustLease(t, s, "other", c.now())
	if l.Range != mute.Range {
		t.Fatalf("expired range %v not re-leased first (got %v)", mute.Range, l.Range)
	}
}

func TestProgressExtendsDeadline(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e10), []Range{{0, 1e10}}, true)
	complete(t, s, c, mustLease(t, s, "n", c.now()), 10e6) // learn 10 M/s
	l := mustLease(t, s, "n", c.now())                     // ≈ 2 s chunk, deadline ≈ 8 s
	// The node turns out 5× slower than measured but keeps reporting progress.
	for i := 1; i <= 9; i++ {
		now := c.advance(time.Second)
		if !s.Progress(l.ID, uint64(float64(i)*2e6), now) {
			t.Fatalf("lease lost at %d s despite progress", i)
		}
		if ev := s.Tick(now); len(ev) != 0 {
			t.Fatalf("expired at %d s despite progress: %+v", i, ev)
		}
	}
	// Silence: it expires.
	if ev := s.Tick(c.advance(time.Minute)); len(ev) != 1 {
		t.Fatalf("silent lease did not expire: %+v", ev)
	}
}

func TestHeterogeneousNodesShareByRate(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	const total = 4e9
	s.AddJob("j", piJob(total), []Range{{0, total}}, true)
	rates := map[string]float64{"a": 100e6, "b": 50e6, "c": 10e6, "d": 5e6}
	units := map[string]uint64{}
	// Discrete-time loop: each node completes a lease when its time comes.
	type slot struct {
		l   Lease
		end time.Time
	}
	busy := map[string]*slot{}
	for s.PendingUnits("j") > 0 || len(busy) > 0 {
		for node, rate := range rates {
			if busy[node] == nil {
				if l, ok := s.Lease(node, c.now()); ok {
					busy[node] = &slot{l, c.now().Add(time.Duration(float64(l.Range.Len()) / rate * float64(time.Second)))}
				}
			}
		}
		var next string
		for node, sl := range busy {
			if next == "" || sl.end.Before(busy[next].end) {
				next = node
			}
		}
		if next == "" {
			break
		}
		sl := busy[next]
		c.t = sl.end
		if _, ev, ok := s.Complete(sl.l.ID, c.now()); ok {
			units[next] += sl.l.Range.Len()
			for _, e := range ev {
				delete(busy, e.Lease.Node)
			}
		}
		delete(busy, next)
	}
	var sum float64
	for _, r := range rates {
		sum += r
	}
	ideal := total / sum
	makespan := c.now().Sub(newClock().now()).Seconds()
	t.Logf("makespan %.2f s, ideal %.2f s (efficiency %.3f), units %v", makespan, ideal, ideal/makespan, units)
	if ideal/makespan < 0.95 {
		t.Errorf("efficiency %.3f < 0.95", ideal/makespan)
	}
	for node, r := range rates {
		share, want := float64(units[node])/total, r/sum
		if share < want*0.8 || share > want*1.2 {
			t.Errorf("%s did %.3f of the work, rate share %.3f", node, share, want)
		}
	}
}

func TestTailChunksShrink(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e10), []Range{{0, 1e10}}, true)
	for _, n := range []string{"a", "b", "c", "d"} {
		complete(t, s, c, mustLease(t, s, n, c.now()), 1e9)
	}
	// Plenty left: a rate-sized chunk (2 s at 1 G/s).
	if l := mustLease(t, s, "a", c.now()); l.Range.Len() < 1.9e9 {
		t.Fatalf("chunk %d, want ≈ 2e9", l.Range.Len())
	}
	// Near the end: no chunk above remaining ÷ (active nodes × 2).
	for s.PendingUnits("j") > 0 {
		rem, active := s.remaining(s.jobs["j"]), s.activeNodes()
		l := mustLease(t, s, "b", c.now())
		if lim := rem/uint64(active*2) + (1 << 16); l.Range.Len() > max(lim, 2<<16) {
			t.Fatalf("tail chunk %d > %d (remaining %d)", l.Range.Len(), lim, rem)
		}
		s.Complete(l.ID, c.advance(time.Millisecond))
	}
}

// withBackup runs a job on a slow and a fast node until the fast one has
// finished everything else and holds a backup copy of the slow one's chunk.
func withBackup(t *testing.T) (s *Scheduler, c *fakeClock, straggler, backup Lease) {
	t.Helper()
	c = newClock()
	s = NewScheduler(SchedulerConfig{ChunkTarget: 10 * time.Second})
	s.AddJob("j", piJob(30e6), []Range{{0, 30e6}}, true)
	complete(t, s, c, mustLease(t, s, "slow", c.now()), 1e6)
	complete(t, s, c, mustLease(t, s, "fast", c.now()), 100e6)
	straggler = mustLease(t, s, "slow", c.now()) // ≈ 10 s of work at 1 M/s
	for s.PendingUnits("j") > 0 {
		l := mustLease(t, s, "fast", c.now())
		s.Complete(l.ID, c.advance(10*time.Millisecond))
	}
	backup, ok := s.Lease("fast", c.now())
	if !ok || !backup.Backup || backup.Range != straggler.Range {
		t.Fatalf("no backup of the straggler: %+v %v", backup, ok)
	}
	return s, c, straggler, backup
}

func TestBackupFirstResultWins(t *testing.T) {
	s, c, straggler, b := withBackup(t)
	if _, ok := s.Lease("fast2", c.now()); ok {
		t.Fatal("a second backup of the same chunk, or one for a node of unknown rate")
	}
	_, ev, ok := s.Complete(b.ID, c.advance(200*time.Millisecond))
	if !ok || len(ev) != 1 || ev[0].Kind != EventCancelled || ev[0].Lease.ID != straggler.ID {
		t.Fatalf("backup won: events %+v", ev)
	}
	if _, _, ok := s.Complete(straggler.ID, c.advance(10*time.Second)); ok {
		t.Fatal("the losing twin completed too")
	}
	if !s.Idle("j") {
		t.Fatal("job not idle after the backup won")
	}
}

func TestPrioritySharesNodes(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("lo", piJob(1e13), []Range{{0, 1e13}}, true)
	s.AddJob("hi", JobSpec{Kind: KindPi, Priority: 3, Pi: &PiParams{Samples: 1e13}}, []Range{{0, 1e13}}, true)
	units := map[string]float64{}
	for range 400 {
		l := mustLease(t, s, "n", c.now())
		if !l.Probe {
			units[l.Job] += l.Expected.Seconds()
		}
		s.Complete(l.ID, c.advance(time.Duration(float64(l.Range.Len())/1e8*float64(time.Second))))
	}
	ratio := units["hi"] / units["lo"]
	t.Logf("node-seconds hi/lo = %.2f", ratio)
	if ratio < 2.7 || ratio > 3.3 {
		t.Errorf("priority 3 vs 1 got a %.2f share ratio, want ≈ 3", ratio)
	}
}

// TestRebuildAfterLeaderChange: a new leader's scheduler built from the job state leases exactly
// the ranges not accepted, so nothing accepted is redone.
func TestRebuildAfterLeaderChange(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "j", Time: t0, Spec: piJob(1e7)})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("j", 1, Range{0, 3e6}, "a"), piChunk("j", 1, Range{5e6, 6e6}, "b")}})
	s := NewScheduler(SchedulerConfig{MinUnits: map[Kind]uint64{KindPi: 1}})
	for _, u := range st.Unfinished() {
		if err := s.AddJob(u.ID, u.Spec, u.Pending, u.State != StateQueued); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.PendingUnits("j"); got != 1e7-4e6 {
		t.Fatalf("pending %d", got)
	}
	c := newClock()
	var leased RangeSet
	for i := 0; s.PendingUnits("j") > 0; i++ {
		l := mustLease(t, s, "n"+itoa(i), c.now())
		if leased.Overlaps(l.Range) {
			t.Fatalf("range %v leased twice", l.Range)
		}
		leased.Add(l.Range)
		out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("j", 1, l.Range, l.Node)}}).(*ResultsOutcome)
		if out.Accepted != 1 {
			t.Fatalf("lease %v rejected: %+v", l.Range, out.Rejected)
		}
	}
	if j, _ := st.Job("j"); j.State != StateDone {
		t.Fatalf("state %s", j.State)
	}
}

func TestRemoveJobCancelsLeases(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e9), []Range{{0, 1e9}}, true)
	l := mustLease(t, s, "a", c.now())
	ev := s.RemoveJob("j")
	if len(ev) != 1 || ev[0].Kind != EventCancelled || ev[0].Lease.ID != l.ID {
		t.Fatalf("%+v", ev)
	}
	if _, ok := s.Lease("a", c.now()); ok {
		t.Fatal("lease from a removed job")
	}
	if s.AddJob("bad", JobSpec{Kind: "x"}, nil, false) == nil {
		t.Fatal("invalid spec added")
	}
}

func TestAdoptChunkOfPreviousLeader(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewScheduler(SchedulerConfig{})
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1 << 30, Seed: 1}}
	if err := s.AddJob("j", spec, []Range{{0, 1 << 30}}, true); err != nil {
		t.Fatal(err)
	}
	l, ok := s.Adopt("a", "j", Range{1 << 20, 1 << 24}, now)
	if !ok || l.Node != "a" || l.Range != (Range{1 << 20, 1 << 24}) {
		t.Fatalf("adopt: %+v %v", l, ok)
	}
	if _, ok := s.Adopt("b", "j", Range{1 << 22, 1 << 25}, now); ok {
		t.Fatal("adopted a range another node holds")
	}
	if _, ok := s.Adopt("b", "nope", Range{0, 1}, now); ok {
		t.Fatal("adopted a chunk of an unknown job")
	}
	// Nothing leased afterwards overlaps the adopted chunk.
	for i := 0; i < 200; i++ {
		n := fmt.Sprintf("n%d", i)
		nl, ok := s.Lease(n, now)
		if !ok {
			break
		}
		if nl.Range.Overlaps(l.Range) && !nl.Backup {
			t.Fatalf("lease %v overlaps the adopted %v", nl.Range, l.Range)
		}
	}
	if _, _, ok := s.Complete(l.ID, now.Add(time.Second)); !ok {
		t.Fatal("the adopted lease cannot complete")
	}
}

// A queued (prefetched) chunk waits for the one before it; its rate sample
// must count only its own computing time.
func TestRateIgnoresQueueWait(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewScheduler(SchedulerConfig{})
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1 << 40, Seed: 1}}
	if err := s.AddJob("j", spec, []Range{{0, 1 << 40}}, true); err != nil {
		t.Fatal(err)
	}
	const rate = 1e8 // units per second
	a, _ := s.Lease("n", now)
	b, _ := s.Lease("n", now) // prefetched
	t1 := now.Add(time.Duration(float64(a.Range.Len()) / rate * float64(time.Second)))
	s.Complete(a.ID, t1)
	t2 := t1.Add(time.Duration(float64(b.Range.Len()) / rate * float64(time.Second)))
	s.Complete(b.ID, t2)
	if got := s.Rate("n", KindPi); got < 0.9*rate || got > 1.1*rate {
		t.Fatalf("rate %.3g, want about %.3g", got, rate)
	}
}

// A worker that pauses hands in the finished prefix of its chunk: the rest
// is pending again at once (the job would stall otherwise), the node's rate
// counts only the prefix, and a backup twin of the chunk is cancelled (its
// whole-range result would overlap the committed prefix).
func TestCompletePrefixRequeuesTheRest(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e8), []Range{{0, 1e8}}, true)
	l := mustLease(t, s, "a", c.now())
	before := s.PendingUnits("j")
	prefix := Range{Start: l.Range.Start, End: l.Range.Start + l.Range.Len()/4}
	if _, ev, ok := s.CompletePrefix(l.ID, prefix, c.advance(time.Second)); !ok || len(ev) != 0 {
		t.Fatalf("complete prefix: ok %v events %+v", ok, ev)
	}
	if got, want := s.PendingUnits("j"), before+l.Range.Len()-prefix.Len(); got != want {
		t.Fatalf("pending %d after the prefix, want %d", got, want)
	}
	if got, want := s.Rate("a", KindPi), float64(prefix.Len()); got < want*0.99 || got > want*1.01 {
		t.Fatalf("rate %.0f/s credits more than the prefix (%d in 1 s)", got, prefix.Len())
	}
	if _, _, ok := s.CompletePrefix(l.ID, prefix, c.now()); ok {
		t.Fatal("a completed lease completed again")
	}
	next := mustLease(t, s, "b", c.now())
	if next.Range.Start != prefix.End {
		t.Fatalf("the rest [%d, …) not handed out first: %v", prefix.End, next.Range)
	}

	// Not a prefix (starts elsewhere): the whole range goes back.
	before = s.PendingUnits("j")
	if _, _, ok := s.CompletePrefix(next.ID, Range{Start: next.Range.Start + 1, End: next.Range.End}, c.now()); !ok {
		t.Fatal("unknown lease")
	}
	if got := s.PendingUnits("j"); got != before+next.Range.Len() {
		t.Fatalf("pending %d after a bad prefix, want %d", got, before+next.Range.Len())
	}
}

func TestCompletePrefixCancelsTheTwin(t *testing.T) {
	s, c, straggler, b := withBackup(t)
	half := Range{Start: straggler.Range.Start, End: straggler.Range.Start + straggler.Range.Len()/2}
	_, ev, ok := s.CompletePrefix(straggler.ID, half, c.advance(time.Second))
	if !ok || len(ev) != 1 || ev[0].Kind != EventCancelled || ev[0].Lease.ID != b.ID {
		t.Fatalf("the straggler's prefix: events %+v", ev)
	}
	if got, want := s.PendingUnits("j"), straggler.Range.Len()-half.Len(); got != want {
		t.Fatalf("pending %d, want the rest %d", got, want)
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("leases left: %+v", s.Leases())
	}
}

func TestOrphansAndRequeue(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1000), []Range{{0, 1000}}, true)
	l := mustLease(t, s, "a", c.now())
	unaccepted := []Range{{0, 1000}}
	if o := s.Orphans("j", unaccepted); len(o) != 0 {
		t.Fatalf("orphans %v with everything pending or leased", o)
	}
	// Lose the lease without requeueing it (the bookkeeping slip the
	// coordinator's repair guards against).
	s.Complete(l.ID, c.now())
	o := s.Orphans("j", unaccepted)
	if len(o) != 1 || o[0] != l.Range {
		t.Fatalf("orphans %v, want [%v]", o, l.Range)
	}
	before := s.PendingUnits("j")
	s.Requeue("j", []Range{{0, 1000}}) // only the orphaned part is added
	if got := s.PendingUnits("j"); got != before+l.Range.Len() {
		t.Fatalf("pending %d, want %d", got, before+l.Range.Len())
	}
	if o := s.Orphans("j", unaccepted); len(o) != 0 {
		t.Fatalf("orphans %v after requeue", o)
	}
	if s.Orphans("nope", unaccepted) != nil {
		t.Fatal("orphans of an unknown job")
	}
}

// TestShortLeasesQueueDeeper: a node holds two leases of normal chunks, but up to MaxShortLeases
// of one-chunk jobs whose expected time together stays under ShortQueue; a probe never counts
// as short.
func TestShortLeasesQueueDeeper(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	if err := s.AddJob("big", piJob(1e12), []Range{{0, 1e12}}, false); err != nil {
		t.Fatal(err)
	}
	p := mustLease(t, s, "n", c.now())
	mustLease(t, s, "n", c.now()) // a second probe-sized lease: the rate is still unknown
	if _, ok := s.Lease("n", c.now()); ok {
		t.Fatal("a third lease while holding probes")
	}
	complete(t, s, c, p, 1e9)
	if _, ok := s.Lease("n", c.now()); !ok {
		t.Fatal("no lease after the probe")
	}
	if _, ok := s.Lease("n", c.now()); ok {
		t.Fatal("a third lease while holding a 2 s chunk")
	}
	s.RemoveJob("big")
	for i := range 20 {
		id := fmt.Sprintf("tiny%d", i)
		if err := s.AddJob(id, piJob(1<<16), []Range{{0, 1 << 16}}, false); err != nil {
			t.Fatal(err)
		}
	}
	held := 0
	for {
		if _, ok := s.Lease("n", c.now()); !ok {
			break
		}
		held++
	}
	if held != 8 {
		t.Fatalf("held %d one-chunk leases of 65 µs each, want MaxShortLeases (8)", held)
	}
}

// TestLateResultCancelsLeaseItReachesInto: an expired lease's node runs on and its result counts
// if it comes first (node/work); the range had gone back to the pending work, and a lease cut
// from it reaches past it. Once the late result is accepted, that lease can only be refused (a
// result overlapping an accepted range is): it is cancelled, and the part of it the late result
// did not cover is pending again at once. Before, it ran on for a refused result, and that part
// lay orphaned until the coordinator's repair pass.
func TestLateResultCancelsLeaseItReachesInto(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	total := Range{0, 1e8}
	s.AddJob("j", piJob(total.End), []Range{total}, true)
	var accepted RangeSet
	accept := func(r Range) []Event {
		accepted.Add(r)
		return s.Accepted("j", r)
	}
	// b's probe gives it a rate: its chunks are then larger than a probe.
	p := mustLease(t, s, "b", c.now())
	if _, _, ok := s.Complete(p.ID, c.advance(100*time.Millisecond)); !ok {
		t.Fatal("b's probe: unknown lease")
	}
	accept(p.Range)
	slow := mustLease(t, s, "slow", c.now())
	if ev := s.Tick(c.advance(31 * time.Second)); len(ev) != 1 || ev[0].Lease.ID != slow.ID {
		t.Fatalf("the slow node's probe did not expire: %+v", ev)
	}
	b := mustLease(t, s, "b", c.now())
	if !b.Range.Overlaps(slow.Range) || slow.Range.Contains(b.Range) {
		t.Fatalf("b's lease %v does not reach past the expired %v", b.Range, slow.Range)
	}
	// The slow node hands its expired chunk in: accepted.
	ev := accept(slow.Range)
	if len(ev) != 1 || ev[0].Kind != EventCancelled || ev[0].Lease.ID != b.ID {
		t.Fatalf("events %+v, want b's lease %d cancelled", ev, b.ID)
	}
	for _, l := range s.Leases() {
		if accepted.Overlaps(l.Range) {
			t.Fatalf("lease %v overlaps the accepted %v: its result can only be refused", l.Range, accepted.Ranges())
		}
	}
	want := accepted.Complement(total)
	if o := s.Orphans("j", want.Ranges()); len(o) != 0 {
		t.Fatalf("orphaned %v", o)
	}
	if got := s.PendingUnits("j"); got != want.Units() {
		t.Fatalf("pending %d units, want every unit not accepted, %d", got, want.Units())
	}
	if next := mustLease(t, s, "c", c.now()); next.Range.Start != slow.Range.End {
		t.Fatalf("next lease %v, want the rest of b's from %d first", next.Range, slow.Range.End)
	}
}

// TestAdoptedChunkDoesNotSetTheRate: a chunk adopted from the previous coordinator was being
// computed before this scheduler leased it, for how long it cannot know: its completion must not
// credit the node's rate with the time since the adoption. Credited, a chunk adopted shortly
// before it ended gave the node a rate many times its own, and its next chunks, sized by it,
// took many times the chunk target (the tail's included).
func TestAdoptedChunkDoesNotSetTheRate(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	s.AddJob("j", piJob(1e12), []Range{{0, 1e12}}, true)
	const rate = 5e8                                                   // the node's samples per second
	held := Range{0, 1e9}                                              // 2 s of its work
	l, ok := s.Adopt("a", "j", held, c.advance(1900*time.Millisecond)) // 1.9 s into it
	if !ok {
		t.Fatal("not adopted")
	}
	if _, _, ok := s.Complete(l.ID, c.advance(100*time.Millisecond)); !ok {
		t.Fatal("the adopted lease cannot complete")
	}
	if r := s.Rate("a", KindPi); r > 2*rate {
		t.Fatalf("rate %.3g/s from an adopted chunk, the node computes %.3g/s", r, float64(rate))
	}
	next := mustLease(t, s, "a", c.now())
	if took := time.Duration(float64(next.Range.Len()) / rate * float64(time.Second)); took > 2*DefaultChunkTarget {
		t.Fatalf("next chunk %v takes the node %v, the target is %v", next.Range, took, DefaultChunkTarget)
	}
	// The chunk queued behind the adopted one started when it ended: that one's time counts.
	q := mustLease(t, s, "a", c.now())
	s.Complete(next.ID, c.advance(time.Duration(float64(next.Range.Len())/rate*float64(time.Second))))
	s.Complete(q.ID, c.advance(time.Duration(float64(q.Range.Len())/rate*float64(time.Second))))
	if r := s.Rate("a", KindPi); r < 0.9*rate || r > 1.1*rate {
		t.Fatalf("rate %.3g/s after its own chunks, want about %.3g/s", r, float64(rate))
	}
}
