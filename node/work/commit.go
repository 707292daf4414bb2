package work

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/wire"
)

// maxBatchItems is where the committer stops adding requests to a batch.
const maxBatchItems = 256

// commitsInFlight is how many batches the committer has in raft at once: raft writes the next
// one to the leader's disk while the previous one is replicated, and appends those waiting
// together (one disk sync for all of them).
const commitsInFlight = 4

type commitReq struct {
	items []compute.ChunkResult
	done  chan commitRes
}

type commitRes struct {
	outcome *compute.ResultsOutcome
	err     error
}

// commit hands items to the committer and waits for their batch.
func (c *leadership) commit(ctx context.Context, items []compute.ChunkResult) (*compute.ResultsOutcome, error) {
	req := &commitReq{items: items, done: make(chan commitRes, 1)}
	select {
	case c.commits <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.outcome, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// committer batches the results of concurrent syncs (group commit): while
// commitsInFlight batches are being committed the next one fills. A batch
// takes whole requests while it holds fewer than maxBatchItems results and
// wire.MaxBatch bytes; applyResults then cuts it into log entries of at
// most wire.MaxBatch bytes each.
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
		n, size := len(batch[0].items), batchSize(batch[0].items)
	fill:
		for n < maxBatchItems && size < wire.MaxBatch {
			select {
			case r := <-c.commits:
				batch = append(batch, r)
				n += len(r.items)
				size += batchSize(r.items)
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

// commitBatch commits the results of batch's requests together and answers each request.
func (c *leadership) commitBatch(ctx context.Context, batch []*commitReq) {
	var all []compute.ChunkResult
	for _, r := range batch {
		all = append(all, r.items...)
	}
	out, err := c.applyResults(ctx, all)
	off := 0
	for _, r := range batch {
		res := commitRes{err: err}
		if err == nil {
			res.outcome = sliceOutcome(out, off, len(r.items))
		}
		off += len(r.items)
		r.done <- res
	}
}

// applyResults commits items as one Results command per part of
// splitBatch, in order, and merges the outcomes (rejection indexes count
// from the first item). On an error the parts before it stay committed: the
// workers resubmit everything, and what was committed is refused as a
// duplicate and acknowledged.
func (c *leadership) applyResults(ctx context.Context, items []compute.ChunkResult) (*compute.ResultsOutcome, error) {
	all := &compute.ResultsOutcome{}
	off := 0
	for _, part := range splitBatch(items, wire.MaxBatch) {
		cmd := compute.Results{Time: time.Now(), Items: part, Audited: c.cfg.Audits != nil}
		if cmd.Audited {
			c.resultsAt.Store(time.Now().UnixNano())
			cmd.Challenge = c.carriedChallenge() // chunks of earlier entries: no entry of their own
		}
		raw, err := c.cfg.Apply(ctx, cmd)
		if err != nil {
			return nil, err
		}
		var out compute.ResultsOutcome
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("decode results outcome: %w", err)
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
	return all, nil
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
