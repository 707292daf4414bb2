package compute

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// FuzzSchedulerRanges drives the scheduler through random leases, completions, finished
// prefixes, failures, departures, expiries and late results (an expired lease's node runs on
// and hands it in: node/work commits it if no accepted range overlaps it), with the
// coordinator's repair of orphaned ranges after a refused result. After every step the pending
// ranges, the leases (a backup with its twin's range) and the accepted ranges must be pairwise
// disjoint and cover the job: no unit computed twice for nothing, none left to nobody.
func FuzzSchedulerRanges(f *testing.F) {
	f.Add(uint64(1), uint64(1e9), uint64(0))
	f.Add(uint64(2), uint64(1e6), uint64(1<<16))
	f.Add(uint64(3), uint64(1<<20), uint64(1<<17))
	f.Add(uint64(91), uint64(1e9), uint64(0)) // a late result reaching into a lease: failed before
	f.Fuzz(func(t *testing.T, seed, total, chunk uint64) {
		total = max(total%1e12, 1)
		spec := piJob(total)
		if chunk != 0 {
			spec.ChunkUnits = max(chunk%(1<<20), MinPiChunkUnits)
			if spec.Validate() != nil {
				spec.ChunkUnits = 0
			}
		}
		job := Range{0, total}
		rng := rand.New(rand.NewPCG(seed, 7))
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		s := NewScheduler(SchedulerConfig{})
		if err := s.AddJob("j", spec, []Range{job}, false); err != nil {
			t.Fatal(err)
		}
		var accepted RangeSet
		out := map[uint64]Lease{} // leases handed out, until their node is told to drop them
		forget := func(ev []Event) {
			for _, e := range ev {
				if e.Kind == EventCancelled {
					delete(out, e.Lease.ID)
				}
			}
		}
		commit := func(r Range) {
			if r.Empty() {
				return
			}
			if accepted.Overlaps(r) { // refused; the repair pass requeues what nobody holds
				rest := accepted.Complement(job)
				s.Requeue("j", rest.Ranges())
				return
			}
			accepted.Add(r)
			forget(s.Accepted("j", r))
		}
		anyOut := func() (Lease, bool) { // the oldest, so that a seed replays the same steps
			ls := slices.SortedFunc(maps.Values(out), func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
			if len(ls) == 0 {
				return Lease{}, false
			}
			return ls[0], true
		}
		for step := 0; step < 300 && !accepted.Covers(job); step++ {
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			node := []string{"a", "b", "c", "d"}[rng.IntN(4)]
			switch rng.IntN(10) {
			case 0, 1, 2:
				if l, ok := s.Lease(node, now); ok {
					out[l.ID] = l
				}
			case 3, 4, 5: // a result, or a finished prefix
				l, ok := anyOut()
				if !ok {
					break
				}
				done := l.Range
				if rng.IntN(2) == 0 {
					done.End = done.Start + rng.Uint64N(done.Len()+1)
				}
				delete(out, l.ID)
				_, ev, held := s.CompletePrefix(l.ID, done, now)
				forget(ev)
				if held || rng.IntN(2) == 0 { // a lease no longer held: a late result
					commit(done)
				}
			case 6:
				if l, ok := anyOut(); ok {
					delete(out, l.ID)
					s.Fail(l.ID)
				}
			case 7:
				s.NodeGone(node, now)
			case 8:
				s.Tick(now)
			case 9:
				s.Progress(uint64(rng.IntN(len(out)+1)), rng.Uint64N(1<<30), now)
			}
			var cover RangeSet
			claim := func(r Range, what string) {
				if cover.Overlaps(r) {
					t.Fatalf("step %d: %s %v overlaps pending, leased or accepted units", step, what, r)
				}
				cover.Add(r)
			}
			for _, r := range s.jobs["j"].pending.Ranges() {
				claim(r, "pending")
			}
			for _, l := range sortedLeases(s.jobs["j"].leases) {
				if l.Backup {
					if l.twin == nil || l.twin.Range != l.Range {
						t.Fatalf("step %d: backup %v without its twin", step, l.Range)
					}
					continue
				}
				claim(l.Range, "lease")
			}
			for _, r := range accepted.Ranges() {
				claim(r, "accepted")
			}
			if !cover.Covers(job) {
				lost := cover.Complement(job)
				t.Fatalf("step %d: units %v neither pending, leased nor accepted", step, lost.Ranges())
			}
		}
	})
}
