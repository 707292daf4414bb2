package work

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/wire"
)

// maxBatchItems is where the committer stops adding requests to a batch.
const maxBatchItems = 256

// commitsInFlight is how many batches the committer has in raft at once: raft writes the next
// one to the leader's disk while the previous one is replicated, and appends those waiting
// together (one disk sync for all of them).
const commitsInFlight = 4

// ApplyGroup proposes several job-state commands together (they share raft entries on the
// leader) and returns each one's JSON result or error, in order.
type ApplyGroup func(ctx context.Context, cmds []any) ([]json.RawMessage, []error)

type commitReq struct {
	items  []compute.ChunkResult
	audits []pendingAudit
	done   chan commitRes
}

// pendingAudit is an auditor's answer waiting for the committer.
type pendingAudit struct {
	node string
	r    result
}

// command is the Audit command of the answer.
func (a pendingAudit) command(now time.Time) compute.Audit {
	cmd := compute.Audit{Time: now, Job: a.r.Job, ID: a.r.Audit.ID, Auditor: a.node, Seconds: a.r.Seconds}
	if a.r.Audit.Full {
		cmd.Payload, cmd.Root = a.r.Payload, a.r.Root
	} else {
		cmd.Leaves = a.r.Audit.Leaves
	}
	return cmd
}

// size bounds the bytes of the answer's command.
func (a pendingAudit) size() int {
	return len(a.r.Payload) + len(a.r.Audit.Leaves)*len(audit.Hash{}) + wire.ResultOverhead
}

type commitRes struct {
	outcome   *compute.ResultsOutcome
	auditErrs []error // per audit answer of the request: refused, or not committed
	err       error
}

// commit hands items to the committer and waits for their batch.
func (c *leadership) commit(ctx context.Context, items []compute.ChunkResult) (*compute.ResultsOutcome, error) {
	out, _, err := c.commitWithAudits(ctx, "", items, nil)
	return out, err
}

// commitWithAudits hands items and node's audit answers to the committer and waits for their
// batch: the outcome of the results, and an error per audit answer (refused or not committed;
// either way the audit is no longer node's). err is the results' error.
func (c *leadership) commitWithAudits(ctx context.Context, node string, items []compute.ChunkResult, audits []result) (*compute.ResultsOutcome, []error, error) {
	var idx []int
	var refused []compute.Rejection
	if c.cfg.Audits != nil {
		// Each result is checked against its commitment once, here, before it is proposed:
		// the replicas do not hash it again (compute.ResultLeaves).
		items, idx, refused = compute.CheckResults(items, c.jobSpec)
	}
	req := &commitReq{items: items, done: make(chan commitRes, 1)}
	for _, r := range audits {
		req.audits = append(req.audits, pendingAudit{node: node, r: r})
	}
	// The term's end ends the wait too: its committer stops then, and a request it never took
	// would not be answered. The worker on this node calls in-process with a context that lasts
	// as long as the node, so it would wait for ever, never to hand in or take work again.
	select {
	case c.commits <- req:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, nil, c.termEnded()
	}
	select {
	case r := <-req.done:
		return compute.MergeRefused(r.outcome, idx, refused), r.auditErrs, r.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, nil, c.termEnded()
	}
}

// termEnded is the error of an exchange the term's end cut short: the worker keeps its results
// and hands them in to the next leader.
func (c *leadership) termEnded() error {
	return fmt.Errorf("term %d ended before its results were committed: %w", c.term, consensus.ErrNotLeader)
}

// jobSpec is a job's spec as this replica has it (compute.CheckResults).
func (c *leadership) jobSpec(id string) (compute.JobSpec, bool) {
	j, ok := c.cfg.Jobs.Job(id)
	return j.Spec, ok
}

// committer batches the results and audit answers of concurrent syncs
// (group commit): while commitsInFlight batches are being committed the next
// one fills. A batch takes whole requests while it holds fewer than
// maxBatchItems results and answers and wire.MaxBatch bytes; applyResults
// then cuts its results into commands of at most wire.MaxBatch bytes each,
// proposed together with its audit answers (consensus's group commit puts
// them in as few log entries as fit).
func (c *leadership) committer(ctx context.Context) {
	slots := make(chan struct{}, commitsInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var batch []*commitReq
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		select {
		case <-ctx.Done():
			return
		case r := <-c.commits:
			batch = append(batch, r)
		}
		n, size := batch[0].count()
	fill:
		for n < maxBatchItems && size < wire.MaxBatch {
			select {
			case r := <-c.commits:
				batch = append(batch, r)
				rn, rs := r.count()
				n, size = n+rn, size+rs
			default:
				break fill
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.commitBatch(ctx, batch)
			<-slots
		}()
	}
}

// count is the request's results and audit answers, and a bound of their bytes.
func (r *commitReq) count() (n, size int) {
	size = batchSize(r.items)
	for _, a := range r.audits {
		size += a.size()
	}
	return len(r.items) + len(r.audits), size
}

// commitBatch commits the results and audit answers of batch's requests together and answers
// each request.
func (c *leadership) commitBatch(ctx context.Context, batch []*commitReq) {
	var all []compute.ChunkResult
	var audits []pendingAudit
	for _, r := range batch {
		all = append(all, r.items...)
		audits = append(audits, r.audits...)
	}
	out, auditErrs, err := c.applyResults(ctx, all, audits)
	off, aoff := 0, 0
	for _, r := range batch {
		res := commitRes{err: err, auditErrs: auditErrs[aoff : aoff+len(r.audits)]}
		if err == nil {
			res.outcome = sliceOutcome(out, off, len(r.items))
		}
		off += len(r.items)
		aoff += len(r.audits)
		r.done <- res
	}
}

// applyResults commits items as one Results command per part of
// splitBatch, in order, together with the audit answers, and merges the
// results' outcomes (rejection indexes count from the first item). On an
// error the parts before it stay committed: the workers resubmit
// everything, and what was committed is refused as a duplicate and
// acknowledged. The audits' errors come one per answer.
func (c *leadership) applyResults(ctx context.Context, items []compute.ChunkResult, audits []pendingAudit) (*compute.ResultsOutcome, []error, error) {
	now := time.Now()
	at := c.stamp(now) // the time replicated: the cluster's clock
	parts := splitBatch(items, wire.MaxBatch)
	cmds := make([]any, 0, len(parts)+len(audits))
	for i, part := range parts {
		cmd := compute.Results{Time: at, Items: part, Audited: c.cfg.Audits != nil}
		if cmd.Audited {
			c.resultsAt.Store(now.UnixNano())
			if i == 0 {
				// Chunks of earlier entries: no entry of their own. The parts are proposed
				// together, so one challenge for all (a later part's would name the same).
				cmd.Challenge = c.carriedChallenge()
			}
		}
		cmds = append(cmds, cmd)
	}
	for _, a := range audits {
		cmds = append(cmds, a.command(at))
	}
	raws, errs := c.applyGroup(ctx, cmds)
	auditErrs := c.auditsAnswered(audits, raws[len(parts):], errs[len(parts):])
	all := &compute.ResultsOutcome{}
	off := 0
	for i, part := range parts {
		if errs[i] != nil {
			return nil, auditErrs, errs[i]
		}
		var out compute.ResultsOutcome
		if err := json.Unmarshal(raws[i], &out); err != nil {
			return nil, auditErrs, fmt.Errorf("decode results outcome: %w", err)
		}
		if out.Challenge != nil {
			if out.Challenge.Audited > 0 {
				c.auditsDirty.Store(true)
			}
			c.applyOutcome(*out.Challenge, "")
		}
		all.Accepted += out.Accepted
		for _, rj := range out.Rejected {
			rj.Index += off
			all.Rejected = append(all.Rejected, rj)
		}
		all.Finished = append(all.Finished, out.Finished...)
		off += len(part)
	}
	return all, auditErrs, nil
}

// applyGroup proposes cmds together (ApplyGroup), or one by one where the coordinator has no
// ApplyGroup (tests).
func (c *leadership) applyGroup(ctx context.Context, cmds []any) ([]json.RawMessage, []error) {
	if c.cfg.ApplyGroup != nil {
		return c.cfg.ApplyGroup(ctx, cmds)
	}
	raws, errs := make([]json.RawMessage, len(cmds)), make([]error, len(cmds))
	for i, cmd := range cmds {
		raws[i], errs[i] = c.cfg.Apply(ctx, cmd)
	}
	return raws, errs
}

// splitBatch cuts items into consecutive parts of at most max bytes by
// batchSize, each of at least one item (a chunk result of at most
// wire.MaxResult bytes always fits alone: see wire's limits).
func splitBatch(items []compute.ChunkResult, max int) [][]compute.ChunkResult {
	var parts [][]compute.ChunkResult
	start, size := 0, 0
	for i := range items {
		s := batchSize(items[i : i+1])
		if i > start && size+s > max {
			parts = append(parts, items[start:i])
			start, size = i, 0
		}
		size += s
	}
	if start < len(items) {
		parts = append(parts, items[start:])
	}
	return parts
}

// sliceOutcome picks the part of a batch's outcome about items
// [off, off+n), renumbered from 0.
func sliceOutcome(out *compute.ResultsOutcome, off, n int) *compute.ResultsOutcome {
	s := &compute.ResultsOutcome{Finished: out.Finished}
	for _, rj := range out.Rejected {
		if rj.Index >= off && rj.Index < off+n {
			rj.Index -= off
			s.Rejected = append(s.Rejected, rj)
		}
	}
	s.Accepted = n - len(s.Rejected)
	return s
}

// batchSize bounds the bytes items take in an encoded Results command.
func batchSize(items []compute.ChunkResult) int {
	s := 0
	for _, it := range items {
		s += len(it.Payload) + wire.ResultOverhead
	}
	return s
}
