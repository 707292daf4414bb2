package compute

import (
	"math/rand/v2"
	"testing"
)

// TestRangeSetMatchesBitmap checks Add, Remove, Overlaps, Covers and Complement against a plain
// bitmap model on random operations.
func TestRangeSetMatchesBitmap(t *testing.T) {
	const n = 300
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		var s RangeSet
		var model [n]bool
		for range 40 {
			a := uint64(rng.IntN(n))
			b := a + uint64(rng.IntN(40))
			b = min(b, n)
			r := Range{a, b}
			if rng.IntN(3) == 0 {
				s.Remove(r)
				for i := a; i < b; i++ {
					model[i] = false
				}
			} else {
				s.Add(r)
				for i := a; i < b; i++ {
					model[i] = true
				}
			}
			// invariants: sorted, disjoint, non-adjacent, non-empty
			rs := s.Ranges()
			for i, x := range rs {
				if x.Empty() || (i > 0 && rs[i-1].End >= x.Start) {
					t.Fatalf("trial %d: bad ranges %v", trial, rs)
				}
			}
			var units uint64
			for _, v := range model {
				if v {
					units++
				}
			}
			if s.Units() != units {
				t.Fatalf("trial %d: units %d, model %d (%v)", trial, s.Units(), units, rs)
			}
			q := Range{uint64(rng.IntN(n)), 0}
			q.End = min(q.Start+uint64(rng.IntN(30)), n)
			any, all := false, true
			for i := q.Start; i < q.End; i++ {
				any = any || model[i]
				all = all && model[i]
			}
			if s.Overlaps(q) != any || s.Covers(q) != all {
				t.Fatalf("trial %d: %v overlaps=%v covers=%v, model %v %v (%v)", trial, q, s.Overlaps(q), s.Covers(q), any, all, rs)
			}
		}
		c := s.Complement(Range{0, n})
		for i := uint64(0); i < n; i++ {
			if c.Overlaps(Range{i, i + 1}) == model[i] {
				t.Fatalf("trial %d: complement wrong at %d", trial, i)
			}
		}
	}
}

// TestRangeSetManyChunks: 20,000 chunks accepted in random order stay cheap and end as one range.
func TestRangeSetManyChunks(t *testing.T) {
	const chunks = 20_000
	order := rand.New(rand.NewPCG(1, 1)).Perm(chunks)
	var s RangeSet
	maxCount := 0
	for _, i := range order {
		r := Range{uint64(i) * 1000, uint64(i+1) * 1000}
		if s.Overlaps(r) {
			t.Fatalf("chunk %d overlaps before being added", i)
		}
		s.Add(r)
		maxCount = max(maxCount, s.Count())
	}
	if s.Count() != 1 || s.Units() != chunks*1000 {
		t.Fatalf("count %d units %d", s.Count(), s.Units())
	}
	t.Logf("at most %d disjoint ranges while 20,000 chunks arrived in random order", maxCount)
}

func BenchmarkRangeSetAddOverlap(b *testing.B) {
	const chunks = 20_000
	order := rand.New(rand.NewPCG(1, 1)).Perm(chunks)
	for b.Loop() {
		var s RangeSet
		for _, i := range order {
			r := Range{uint64(i) * 1000, uint64(i+1) * 1000}
			if !s.Overlaps(r) {
				s.Add(r)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/chunks, "ns/chunk")
}
