package compute

// The Results op: a batch of chunk results checked against their leases, their commitments and
// the job's ranges, then stored and counted (jobstore.go has the state and the other ops).

import (
	"fmt"
	"unicode/utf8"
)

// acceptedResult is a validated chunk result waiting to be stored and counted.
type acceptedResult struct {
	item   ChunkResult
	j      *job
	hits   uint64
	leaves int
}

func (s *JobStore) results(c Results) (*ResultsOutcome, error) {
	out := &ResultsOutcome{}
	var ok []acceptedResult
	batch := map[string]*RangeSet{} // ranges accepted earlier in this batch, per job
	for i, it := range c.Items {
		hits, reason := s.check(it, batch, c.Audited)
		var leaves int
		if reason == "" && c.Audited {
			var h uint64
			leaves, h, reason = s.checkCommitment(it)
			if leaves >= 0 && s.jobs[it.Job].spec.Kind == KindPi {
				hits = h // check left the decoding to ChunkLeaves
			}
		}
		if reason != "" {
			out.Rejected = append(out.Rejected, Rejection{Index: i, Job: it.Job, Range: it.Range, Reason: reason})
			continue
		}
		rs := batch[it.Job]
		if rs == nil {
			rs = &RangeSet{}
			batch[it.Job] = rs
		}
		rs.Add(it.Range)
		ok = append(ok, acceptedResult{item: it, j: s.jobs[it.Job], hits: hits, leaves: leaves})
	}
	// Store first, count after: if the store fails nothing is counted. In an entry of several
	// commands (ApplyBatch) the records wait for the entry's end, whose failure stops the node.
	if len(ok) > 0 {
		recs := make([]StoredResult, len(ok))
		for i, a := range ok {
			recs[i] = StoredResult{Chunk: a.item.Chunk, Payload: a.item.Payload}
		}
		if err := s.payloads.Put(recs); err != nil {
			return nil, &StorageError{Op: "results", Err: err}
		}
	}
	if c.Challenge != nil {
		ch := *c.Challenge
		ch.Time = c.Time
		out.Challenge = s.challenge(ch)
	}
	if len(ok) == 0 {
		return out, nil
	}
	s.now = c.Time
	for _, a := range ok {
		j := a.j
		j.accepted.Add(a.item.Range)
		if c.Audited && a.leaves >= 0 {
			nc := s.cred(a.item.Node)
			nc.seq++
			j.recs[a.item.Range.Start] = &auditRec{
				rng: a.item.Range, node: a.item.Node, kind: j.spec.Kind, seq: nc.seq, leaves: a.leaves,
				root: a.item.Root, hits: a.hits, step: stepCommitted,
			}
			j.open++
			s.wait(j, a.item.Range.Start)
		} else {
			switch {
			case j.spec.Kind != KindWasm:
				j.hits += a.hits
			case j.cleared.Units() == 0:
				j.hits = a.hits
			default:
				j.hits = j.spec.Wasm.Reduce.Combine(j.hits, a.hits)
			}
			j.cleared.Add(a.item.Range)
		}
		histHits := a.hits
		if j.spec.Kind == KindWasm {
			histHits = 0 // a wasm value is no count of the range's units
		}
		n := j.nodes[a.item.Node]
		if n == nil {
			n = &NodeContribution{Node: a.item.Node}
			j.nodes[a.item.Node] = n
		}
		n.Units += a.item.Range.Len()
		n.Chunks++
		n.ComputeSeconds += a.item.ComputeSeconds
		j.hist.add(a.item.Range, histHits, a.item.Node, a.item.ComputeSeconds, c.Time)
		size := int64(len(a.item.Payload)) + 16
		j.payloadBytes += size
		s.totalPayload += size
		if j.state == StateQueued {
			j.state, j.started = StateRunning, c.Time
		}
		if j.cleared.Covers(j.total()) && j.state != StateDone {
			j.state, j.finished = StateDone, c.Time
			out.Finished = append(out.Finished, j.id)
		}
		out.Accepted++
	}
	return out, nil
}

// check validates one chunk result against the state and the batch so far. It returns the π
// hits (0 for Mandelbrot) or the reason for rejecting it. A π or Mandelbrot payload of an
// audited result is left to checkCommitment (ResultLeaves): the coordinator decoded it and
// checked its commitment before proposing it, and every replica decoding every result it
// applies was most of a node's own CPU while a Mandelbrot job ran.
func (s *JobStore) check(it ChunkResult, batch map[string]*RangeSet, audited bool) (uint64, string) {
	j, ok := s.jobs[it.Job]
	switch {
	case !ok:
		return 0, "unknown job"
	case j.state == StateCancelled:
		return 0, "job cancelled"
	case j.state == StateFailed:
		return 0, "job failed"
	case it.Range.Empty():
		return 0, "empty range"
	case !j.total().Contains(it.Range):
		return 0, fmt.Sprintf("range %v outside the job's %v", it.Range, j.total())
	case j.accepted.Overlaps(it.Range):
		return 0, "overlaps an accepted range"
	case batch[it.Job] != nil && batch[it.Job].Overlaps(it.Range):
		return 0, "overlaps a range earlier in the batch"
	case !validSeconds(it.ComputeSeconds):
		return 0, fmt.Sprintf("compute seconds %g outside 0–%g", it.ComputeSeconds, MaxComputeSeconds)
	case !utf8.ValidString(it.Node):
		return 0, "node id not valid UTF-8" // see validText
	}
	switch j.spec.Kind {
	case KindPi:
		if audited {
			return 0, "" // checkCommitment decodes it
		}
		hits, err := DecodePiResult(it.Payload, it.Range)
		if err != nil {
			return 0, err.Error()
		}
		return hits, ""
	case KindMandelbrot:
		if audited {
			return 0, "" // checkCommitment decodes it
		}
		m := j.spec.Mandel
		if _, err := DecodeMandelPayload(it.Payload, int(it.Range.Len())*m.Width, uint32(m.MaxIter)); err != nil {
			return 0, err.Error()
		}
		return 0, ""
	case KindWasm:
		v, _, err := DecodeWasmPayload(it.Payload, j.spec.Wasm.Reduce)
		if err != nil {
			return 0, err.Error()
		}
		return v, ""
	}
	return 0, "unknown kind"
}

// checkCommitment checks an audited result against its node's standing and decodes what the
// state keeps of it (ResultLeaves); it returns the chunk's leaf count (-1 for a kind without commitments) and its π
// hits, or the reason for rejecting it.
func (s *JobStore) checkCommitment(it ChunkResult) (int, uint64, string) {
	if c := s.creds[it.Node]; c != nil && c.quarantined {
		return 0, 0, "node quarantined"
	}
	spec := s.jobs[it.Job].spec
	if !Auditable(spec.Kind) {
		return -1, 0, "" // counted at once, as without audits
	}
	// The coordinator checked the payload against the root before proposing it
	// (CheckCommitment): here only what the state keeps is decoded, nothing hashed.
	leaves, hits, err := ResultLeaves(spec, it.Range, it.Payload)
	if err != nil {
		return 0, 0, "commitment: " + err.Error()
	}
	return leaves, hits, ""
}
