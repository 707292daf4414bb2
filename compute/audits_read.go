package compute

import (
	"cmp"
	"slices"

	"github.com/hydra-compute/hydra/compute/audit"
)

// Unchallenged lists accepted chunks waiting for their Challenge, at most max, in job order: a
// coordinator proposes a Challenge for them (again after a leader change). It reads only those
// chunks (the coordinator calls it with every commit). A cancelled or failed job's chunks are
// not listed: its owner stopped it, so no node computes anything more for it, audits included.
func (s *JobStore) Unchallenged(max int) []ChunkRef {
	s.mu.RLock()
	defer s.mu.RUnlock()
	js := make([]*job, 0, len(s.waitJobs))
	for _, j := range s.waitJobs {
		if !j.state.Finished() {
			js = append(js, j)
		}
	}
	slices.SortFunc(js, func(a, b *job) int { return cmp.Compare(a.seq, b.seq) })
	var out []ChunkRef
	for _, j := range js {
		starts := make([]uint64, 0, len(j.waiting))
		for start := range j.waiting {
			starts = append(starts, start)
		}
		slices.Sort(starts)
		for _, start := range starts {
			if len(out) >= max {
				return out
			}
			out = append(out, ChunkRef{Job: j.id, Start: start})
		}
	}
	return out
}

// AuditTasks lists the audits to run: chunks chosen for audit and disputes, in job order. It
// reads only the chunks under audit (the audit index), not every chunk of the open jobs. A
// cancelled or failed job's audits are not listed: workers lease audits ahead of new chunks,
// so a stopped job's audits would otherwise take nodes from the jobs still running.
func (s *JobStore) AuditTasks() []AuditTask {
	s.mu.RLock()
	defer s.mu.RUnlock()
	type open struct {
		j *job
		r *auditRec
	}
	recs := make([]open, 0, len(s.auditIx))
	for _, ref := range s.auditIx {
		j := s.jobs[ref.Job]
		if j == nil || j.state.Finished() {
			continue
		}
		if r := j.recs[ref.Range.Start]; r != nil && (r.step == stepAuditing || r.step == stepDisputed) {
			recs = append(recs, open{j, r})
		}
	}
	slices.SortFunc(recs, func(a, b open) int {
		if a.j.seq != b.j.seq {
			return cmp.Compare(a.j.seq, b.j.seq)
		}
		return cmp.Compare(a.r.rng.Start, b.r.rng.Start)
	})
	out := make([]AuditTask, 0, len(recs))
	for _, o := range recs {
		j, r := o.j, o.r
		t := AuditTask{ID: r.id, Job: j.id, Spec: j.spec, Chunk: r.rng, Node: r.node, Auditor: r.auditor, Full: r.step == stepDisputed}
		if t.Full {
			t.Spans = []Range{r.rng}
		} else {
			t.Spans = auditSpans(j.spec, r)
		}
		out = append(out, t)
	}
	return out
}

func auditSpans(spec JobSpec, r *auditRec) []Range {
	if r.leaves == 1 {
		return []Range{r.rng} // one leaf: the whole chunk (also a WebAssembly result without blocks)
	}
	blocks, err := ChunkBlocks(spec, r.rng)
	if err != nil {
		return nil
	}
	bs := make([]audit.Block, len(blocks))
	for i, b := range blocks {
		bs[i] = audit.Block{Start: b.Start, End: b.End}
	}
	var out []Range
	for _, sp := range audit.Spans(bs, r.blocks) {
		out = append(out, Range{sp.Start, sp.End})
	}
	return out
}

// disputes counts the job's chunks in dispute (Job.Disputes). Only chunks still under audit
// have records, so a finished job's count costs nothing.
func (j *job) disputes() int {
	n := 0
	for _, r := range j.recs {
		if r.step == stepDisputed {
			n++
		}
	}
	return n
}
