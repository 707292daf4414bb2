package work

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
)

// The worker's side of audits (docs/audits.md): it recomputes what an audit lease names in the
// compute child and hands in the answer like a result.

// corrupt, when set (builds with the cheat tag only: cheat.go), rewrites a
// chunk result before the worker commits to it: a deliberate cheater for
// tests of the audits.
var corrupt func(spec compute.JobSpec, done compute.Range, payload []byte) []byte

// Audits run together: the π audits a worker holds of one job run as one task of the compute
// child (child.Chunk.Spans), each still answered on its own. An audit of a job of tiny chunks is
// microseconds of work, and a round trip to the child each cost milliseconds.
const (
	maxAuditBundle = 64                     // audits in one task
	maxBundleSpans = compute.MaxLeaseChunks // spans in one task (the child's bound on parts)
)

// takeAuditsLocked takes from the queue the audits to run with audit lease l as one task: π
// audits of the same job whose spans overlap none of the others'. A worker holds several only
// while they are short (the coordinator's leaseAuditsLocked), so the task is short too.
func (w *Worker) takeAuditsLocked(l lease) []lease {
	if l.Audit == nil || l.Spec.Kind != compute.KindPi {
		return nil
	}
	spans := append([]compute.Range(nil), l.Audit.Spans...)
	var more []lease
	kept := w.queue[:0]
	for _, q := range w.queue {
		if q.Audit != nil && q.Job == l.Job && q.Spec.Kind == compute.KindPi && len(more)+1 < maxAuditBundle &&
			len(spans)+len(q.Audit.Spans) <= maxBundleSpans && !overlapsAny(spans, q.Audit.Spans) {
			more = append(more, q)
			spans = append(spans, q.Audit.Spans...)
			continue
		}
		kept = append(kept, q)
	}
	w.queue = kept
	return more
}

// overlapsAny reports whether a range of b overlaps one of a.
func overlapsAny(a, b []compute.Range) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Start < y.End && y.Start < x.End {
				return true
			}
		}
	}
	return false
}

// runAudits recomputes a bundle of audits (takeAuditsLocked) and answers each. An audit whose
// task does not hold together (checkAudit) is refused with an error, and given back like an
// audit that failed (finishAudits), before anything runs: the coordinator is another node,
// and what it sends must not crash this one. The others run as runBundle runs them.
func (w *Worker) runAudits(ctx context.Context, bundle []lease) ([]result, []error) {
	answers, errs := make([]result, len(bundle)), make([]error, len(bundle))
	var ok []lease
	var at []int // ok[k] is bundle[at[k]]
	for i, l := range bundle {
		if errs[i] = checkAudit(l); errs[i] == nil {
			ok, at = append(ok, l), append(at, i)
		}
	}
	if len(ok) == 0 {
		return answers, errs
	}
	as, es := w.runBundle(ctx, ok)
	for k, i := range at {
		answers[i], errs[i] = as[k], es[k]
	}
	return answers, errs
}

// checkAudit reports why audit lease l cannot be run as given, or nil: it must name at least
// one span, each non-empty, in order, apart, and inside the chunk; a full audit exactly the
// chunk. The coordinator builds its audits so (compute.AuditTask); runBundle and
// auditAnswerOf rely on it. (A block audit of a large chunk may name more spans than a bundle
// holds: it then runs alone, takeAuditsLocked.)
func checkAudit(l lease) error {
	a := l.Audit
	if a == nil {
		return fmt.Errorf("lease %d is not an audit", l.ID)
	}
	if len(a.Spans) == 0 {
		return fmt.Errorf("audit %d of chunk %v: no spans", a.ID, l.Range)
	}
	if a.Full && (len(a.Spans) != 1 || a.Spans[0] != l.Range) {
		return fmt.Errorf("audit %d: a full audit of chunk %v names spans %v", a.ID, l.Range, a.Spans)
	}
	for i, sp := range a.Spans {
		if sp.Empty() || !l.Range.Contains(sp) {
			return fmt.Errorf("audit %d: span %v is empty or outside chunk %v", a.ID, sp, l.Range)
		}
		if i > 0 && sp.Start < a.Spans[i-1].End {
			return fmt.Errorf("audit %d: span %v overlaps or precedes span %v", a.ID, sp, a.Spans[i-1])
		}
	}
	return nil
}

// runBundle recomputes a bundle of audits that checkAudit passed and answers each: one audit
// alone as runAudit does, several as one task of the child with a span each.
func (w *Worker) runBundle(ctx context.Context, bundle []lease) ([]result, []error) {
	answers, errs := make([]result, len(bundle)), make([]error, len(bundle))
	if len(bundle) == 1 {
		answers[0], errs[0] = w.runAudit(ctx, bundle[0])
		return answers, errs
	}
	type owned struct {
		r    compute.Range
		i, j int // bundle[i].Audit.Spans[j]
	}
	var spans []owned
	var units uint64
	payloads := make([][][]byte, len(bundle))
	for i, l := range bundle {
		payloads[i] = make([][]byte, len(l.Audit.Spans))
		for j, sp := range l.Audit.Spans {
			spans = append(spans, owned{sp, i, j})
			units += sp.Len()
		}
	}
	slices.SortFunc(spans, func(a, b owned) int { return cmp.Compare(a.r.Start, b.r.Start) })
	rs := make([]compute.Range, len(spans))
	for k, o := range spans {
		rs[k] = o.r
	}
	spec := bundle[0].Spec
	spec.ChunkUnits = 0 // a span's result in one piece, not cut at the job's chunks
	res, err := w.runner.Run(ctx, child.Chunk{ID: bundle[0].ID, Spec: spec, Range: compute.Range{Start: rs[0].Start, End: rs[len(rs)-1].End}, Spans: rs}, nil)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return answers, errs
	}
	parts := append([]child.Part{{Done: res.Done, Payload: res.Payload}}, res.Also...)
	missing := make([]bool, len(bundle))
	for k, o := range spans {
		if k < len(parts) && parts[k].Done == o.r {
			payloads[o.i][o.j] = parts[k].Payload
		} else {
			missing[o.i] = true // stopped before this span
		}
	}
	for i, l := range bundle {
		if missing[i] {
			errs[i] = fmt.Errorf("audit %d: stopped before all of its spans", l.Audit.ID)
			continue
		}
		var u uint64
		for _, sp := range l.Audit.Spans {
			u += sp.Len()
		}
		answers[i], errs[i] = auditAnswerOf(l, payloads[i], res.ComputeSeconds*float64(u)/float64(units))
	}
	return answers, errs
}

// runAudit recomputes an audit's spans in the compute child and returns
// the answer: the spans' leaves, or for a full audit the chunk's result.
func (w *Worker) runAudit(ctx context.Context, l lease) (result, error) {
	a := l.Audit
	var payloads [][]byte
	var secs float64
	spec := l.Spec
	spec.ChunkUnits = 0 // a span's result in one piece, not cut at the job's chunks
	for _, sp := range a.Spans {
		res, err := w.runner.Run(ctx, child.Chunk{ID: l.ID, Spec: spec, Range: sp}, nil)
		if err != nil {
			return result{}, err
		}
		if res.Done != sp {
			return result{}, fmt.Errorf("audit %d: stopped after %v of %v", a.ID, res.Done, sp)
		}
		secs += res.ComputeSeconds
		payloads = append(payloads, res.Payload)
	}
	return auditAnswerOf(l, payloads, secs)
}

// auditAnswerOf is the answer to audit lease l from its spans' results (payloads, in the order
// of its spans) that took secs of compute: the spans' leaves, or for a full audit the chunk's
// result.
func auditAnswerOf(l lease, payloads [][]byte, secs float64) (result, error) {
	a := l.Audit
	ans := result{Lease: l.ID, Term: l.Term, Chunk: l.Chunk, Seconds: secs, Audit: &auditAnswer{ID: a.ID, Full: a.Full}}
	if a.Full {
		if len(payloads) != 1 {
			return ans, fmt.Errorf("audit %d: a full audit has one span, not %d", a.ID, len(payloads))
		}
		root, err := compute.Commitment(l.Spec, a.Spans[0], payloads[0])
		if err != nil {
			return ans, fmt.Errorf("audit %d: %w", a.ID, err)
		}
		ans.Payload, ans.Root = payloads[0], root
		return ans, nil
	}
	leaves, err := compute.SpanLeaves(l.Spec, a.Spans, payloads)
	if err != nil {
		return ans, fmt.Errorf("audit %d: %w", a.ID, err)
	}
	ans.Audit.Leaves = leaves
	return ans, nil
}

// finishAudits files the answers of a bundle of audits (bundle[0] is the running lease), or
// gives them back; took is their time in the child. Cancelling the running lease stops the
// whole task: the others go back to the coordinator at once (not after their deadline).
func (w *Worker) finishAudits(bundle []lease, answers []result, errs []error, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := *w.running
	w.running, w.stopRun = nil, nil
	discard := w.discard
	w.discard = false
	ok := 0
	for i, l := range bundle {
		id, term := l.ID, l.Term
		if i == 0 {
			id, term = cur.ID, cur.Term
		}
		switch {
		case discard && i == 0:
			w.log.Debug("audit cancelled", "job", l.Job, "audit", l.Audit.ID)
		case discard || errs[i] != nil:
			w.log.Info("audit not finished: given back", "job", l.Job, "audit", l.Audit.ID, "err", errs[i])
			if term == w.term {
				w.failed = append(w.failed, id)
			}
		default:
			ok++
			w.results = append(w.results, answers[i])
			w.log.Debug("audit done", "job", l.Job, "audit", l.Audit.ID, "spans", len(l.Audit.Spans))
		}
	}
	if ok == len(bundle) {
		w.lastAudit = took / time.Duration(len(bundle))
	}
}
