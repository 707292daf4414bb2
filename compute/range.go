package compute

import (
	"fmt"
	"slices"
	"sort"
)

// Range is a half-open range [Start, End) of a job's work units (π samples or Mandelbrot rows).
// A chunk is a Range leased to one node; results are accepted per Range.
type Range struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// Len is the number of units in r (0 for an empty or reversed range).
func (r Range) Len() uint64 {
	if r.End <= r.Start {
		return 0
	}
	return r.End - r.Start
}

// Empty reports whether r holds no unit.
func (r Range) Empty() bool { return r.End <= r.Start }

// Overlaps reports whether r and o share a unit.
func (r Range) Overlaps(o Range) bool {
	return !r.Empty() && !o.Empty() && r.Start < o.End && o.Start < r.End
}

// Contains reports whether o lies inside r.
func (r Range) Contains(o Range) bool { return o.Start >= r.Start && o.End <= r.End }

// String formats r as [start,end), as logs and errors show ranges.
func (r Range) String() string { return fmt.Sprintf("[%d,%d)", r.Start, r.End) }

// Chunk is a piece of work: the units Range of job Job. The scheduler carves jobs into chunks,
// the coordinator leases them to workers, a worker computes them, and the job state accepts each
// chunk's result once. In JSON it is flat: {"job", "start", "end"}.
type Chunk struct {
	Job string `json:"job"`
	Range
}

// RangeSet is a set of units kept as sorted, disjoint, non-adjacent ranges, so that a job cut in
// 20,000 chunks whose results arrive in any order stays a handful of ranges, and every operation
// is a binary search plus at most one splice. The zero value is empty. Not safe for concurrent
// use.
type RangeSet struct {
	rs []Range
}

// find returns the index of the first range whose End ≥ u (the first that may touch u).
func (s *RangeSet) find(u uint64) int {
	return sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End >= u })
}

// Add unions r into the set.
func (s *RangeSet) Add(r Range) {
	if r.Empty() {
		return
	}
	i := s.find(r.Start) // first range with End ≥ r.Start: it touches r or lies after it
	j := i
	for j < len(s.rs) && s.rs[j].Start <= r.End {
		r.Start = min(r.Start, s.rs[j].Start)
		r.End = max(r.End, s.rs[j].End)
		j++
	}
	s.rs = slices.Replace(s.rs, i, j, r)
}

// Remove subtracts r from the set.
func (s *RangeSet) Remove(r Range) {
	if r.Empty() {
		return
	}
	i := s.find(r.Start + 1) // first range with End > r.Start
	var keep []Range
	j := i
	for j < len(s.rs) && s.rs[j].Start < r.End {
		if s.rs[j].Start < r.Start {
			keep = append(keep, Range{s.rs[j].Start, r.Start})
		}
		if s.rs[j].End > r.End {
			keep = append(keep, Range{r.End, s.rs[j].End})
		}
		j++
	}
	s.rs = slices.Replace(s.rs, i, j, keep...)
}

// Overlaps reports whether any unit of r is in the set.
func (s *RangeSet) Overlaps(r Range) bool {
	if r.Empty() {
		return false
	}
	i := s.find(r.Start + 1)
	return i < len(s.rs) && s.rs[i].Start < r.End
}

// Covers reports whether every unit of r is in the set.
func (s *RangeSet) Covers(r Range) bool {
	if r.Empty() {
		return true
	}
	i := s.find(r.Start + 1)
	return i < len(s.rs) && s.rs[i].Start <= r.Start && s.rs[i].End >= r.End
}

// Units is the number of units in the set.
func (s *RangeSet) Units() uint64 {
	var n uint64
	for _, r := range s.rs {
		n += r.Len()
	}
	return n
}

// Count is the number of disjoint ranges the set is made of.
func (s *RangeSet) Count() int { return len(s.rs) }

// Ranges returns a copy of the set's ranges in ascending order.
func (s *RangeSet) Ranges() []Range { return slices.Clone(s.rs) }

// Clone returns an independent copy.
func (s *RangeSet) Clone() RangeSet { return RangeSet{rs: slices.Clone(s.rs)} }

// Complement returns the units of within that are not in the set: for a job, all ranges minus
// accepted ranges is its pending work.
func (s *RangeSet) Complement(within Range) RangeSet {
	out := RangeSet{rs: []Range{within}}
	if within.Empty() {
		return RangeSet{}
	}
	for _, r := range s.rs {
		if r.Overlaps(within) {
			out.Remove(r)
		}
	}
	return out
}

// NewRangeSet builds a set from ranges in any order, overlapping or not.
func NewRangeSet(rs ...Range) RangeSet {
	var s RangeSet
	for _, r := range rs {
		s.Add(r)
	}
	return s
}
