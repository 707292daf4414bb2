package work

import (
	"context"
	"fmt"
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

// runAudit recomputes an audit's spans in the compute child and returns
// the answer: the spans' leaves, or for a full audit the chunk's result.
func (w *Worker) runAudit(ctx context.Context, l lease) (result, error) {
	a := l.Audit
	ans := result{Lease: l.ID, Term: l.Term, Chunk: l.Chunk, Audit: &auditAnswer{ID: a.ID, Full: a.Full}}
	var payloads [][]byte
	spec := l.Spec
	spec.ChunkUnits = 0 // a span's result in one piece, not cut at the job's chunks
	for _, sp := range a.Spans {
		res, err := w.runner.Run(ctx, child.Chunk{ID: l.ID, Spec: spec, Range: sp}, nil)
		if err != nil {
			return ans, err
		}
		if res.Done != sp {
			return ans, fmt.Errorf("audit %d: stopped after %v of %v", a.ID, res.Done, sp)
		}
		ans.Seconds += res.ComputeSeconds
		payloads = append(payloads, res.Payload)
	}
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

// finishAudit files an audit's answer, or gives the audit back; took is its time in the child.
func (w *Worker) finishAudit(l lease, ans result, err error, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.lastAudit = took
	}
	cur := *w.running
	w.running, w.stopRun = nil, nil
	switch {
	case w.discard:
		w.log.Debug("audit cancelled", "job", l.Job, "audit", l.Audit.ID)
	case err != nil:
		w.log.Info("audit not finished: given back", "job", l.Job, "audit", l.Audit.ID, "err", err)
		if cur.Term == w.term {
			w.failed = append(w.failed, cur.ID)
		}
	default:
		w.results = append(w.results, ans)
		w.log.Debug("audit done", "job", l.Job, "audit", l.Audit.ID, "spans", len(l.Audit.Spans))
	}
	w.discard = false
}
