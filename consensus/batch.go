package consensus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/wire"
)

// Group commit on the leader. App commands (ops ≥ OpAppFirst: job submits, chunk results,
// audits, cancels) proposed while earlier ones are being committed wait, and go together in one
// OpBatch log entry: one append to the leader's log, one disk sync on every voter, one
// replication and one FSM call for all of them instead of one each. A command proposed while
// nothing waits goes at once, in an entry of its own, so a quiet cluster sees no added delay.
// The FSM applies a batch's commands in order, exactly as if each had its own entry, and every
// proposer gets its own command's result. Forwarded commands (a follower's submit) are proposed
// here too, on the leader, so they join the same batches.

// batchInFlight is how many entries the group commit has in raft at once: the next one is
// written to the log while the one before it is replicated, and whatever is proposed meanwhile
// waits for the next free slot. Fewer slots make bigger batches (fewer disk syncs) at the
// cost of a commit's latency.
const batchInFlight = 1

// maxBatchCommands bounds the commands of one OpBatch entry (the decoder refuses more).
const maxBatchCommands = 4096

// batchFormat is the first byte of an OpBatch payload, so that the format can grow.
const batchFormat = 1

// batchHeader bounds the bytes an OpBatch entry adds before its commands: the version and op
// bytes, the format byte and the count.
const batchHeader = 2 + 1 + binary.MaxVarintLen32

// proposal is one App command waiting for the group commit.
type proposal struct {
	data []byte // the encoded command (EncodeCommand)
	done chan proposalResult
}

// proposalResult is what a proposal's entry gave: its index and the command's own result (the
// FSM's value for it), or the error that kept the entry from being committed.
type proposalResult struct {
	index uint64
	resp  any
	err   error
}

// grouper queues proposals for the group commit.
type grouper struct {
	mu       sync.Mutex
	queue    []*proposal
	inFlight int // entries in raft now (at most batchInFlight)
}

// propose commits data (an App command; this node leads) with whatever else is proposed at
// about the same time, and returns its entry's index and its own result.
func (r *Raft) propose(ctx context.Context, data []byte) (uint64, any, error) {
	res := r.proposeAll(ctx, [][]byte{data})[0]
	return res.index, res.resp, res.err
}

// proposeAll queues datas (App commands; this node leads) together, so that they share entries
// as far as they fit, and returns each one's result in order.
func (r *Raft) proposeAll(ctx context.Context, datas [][]byte) []proposalResult {
	ps := make([]*proposal, len(datas))
	g := &r.group
	g.mu.Lock()
	for i, d := range datas {
		ps[i] = &proposal{data: d, done: make(chan proposalResult, 1)}
		g.queue = append(g.queue, ps[i])
	}
	var batch []*proposal
	if g.inFlight < batchInFlight && len(g.queue) > 0 {
		g.inFlight++
		batch = g.takeLocked()
	}
	g.mu.Unlock()
	if batch != nil {
		go r.commitBatches(batch)
	}
	out := make([]proposalResult, len(ps))
	for i, p := range ps {
		select {
		case out[i] = <-p.done:
		case <-ctx.Done():
			out[i].err = ctx.Err() // it may still commit, as any proposal whose caller gave up
		}
	}
	return out
}

// ApplyGroup proposes cmds together and returns each one's result (as Apply would) or error,
// in order. On the leader, App commands go to the group commit at once and share log entries
// as far as they fit (a batch of chunk results with an auditor's answers); the rest, and
// everything on a follower or after a leader change, goes through Apply, concurrently.
func (r *Raft) ApplyGroup(ctx context.Context, cmds []Command) ([]json.RawMessage, []error) {
	out, errs := make([]json.RawMessage, len(cmds)), make([]error, len(cmds))
	viaApply := make([]bool, len(cmds))
	if r.raft.State() == raft.Leader {
		var datas [][]byte
		var at []int
		for i, c := range cmds {
			if c.Op < OpAppFirst {
				viaApply[i] = true
				continue
			}
			if err := r.CheckOp(c.Op); err != nil {
				errs[i] = err
				continue
			}
			d, err := EncodeCommand(c)
			if err != nil {
				errs[i] = err
				continue
			}
			datas, at = append(datas, d), append(at, i)
		}
		for k, res := range r.proposeAll(ctx, datas) {
			i := at[k]
			resp, err := response(res.index, res.resp, res.err)
			if errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
				viaApply[i] = true // Apply retries it on the new leader
				continue
			}
			out[i], errs[i] = resp.Result, err
		}
	} else {
		for i := range viaApply {
			viaApply[i] = true
		}
	}
	var wg sync.WaitGroup
	for i, c := range cmds {
		if viaApply[i] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i], errs[i] = r.Apply(ctx, c)
			}()
		}
	}
	wg.Wait()
	return out, errs
}

// takeLocked takes the next batch off the queue: at least one proposal, then more while the
// entry stays within wire.MaxLogEntry and maxBatchCommands.
func (g *grouper) takeLocked() []*proposal {
	n, size := 0, batchHeader
	for n < len(g.queue) && n < maxBatchCommands {
		s := binary.MaxVarintLen32 + len(g.queue[n].data)
		if n > 0 && size+s > wire.MaxLogEntry {
			break
		}
		size += s
		n++
	}
	batch := g.queue[:n:n]
	if n == len(g.queue) {
		g.queue = nil
	} else {
		g.queue = append([]*proposal(nil), g.queue[n:]...)
	}
	return batch
}

// commitBatches commits batch, then the batches that queued meanwhile, until none waits; then
// it gives its slot back.
func (r *Raft) commitBatches(batch []*proposal) {
	g := &r.group
	for {
		r.commitBatch(batch)
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.inFlight--
			g.mu.Unlock()
			return
		}
		batch = g.takeLocked()
		g.mu.Unlock()
	}
}

// commitBatch proposes batch as one entry (a lone command as itself) and answers each proposal.
func (r *Raft) commitBatch(batch []*proposal) {
	data := batch[0].data
	if len(batch) > 1 {
		cmds := make([][]byte, len(batch))
		for i, p := range batch {
			cmds[i] = p.data
		}
		data = encodeBatch(cmds)
	}
	f := r.raft.Apply(data, r.t.Apply)
	if err := r.await(context.Background(), f); err != nil {
		for _, p := range batch {
			p.done <- proposalResult{err: err}
		}
		return
	}
	index, resp := f.Index(), f.Response()
	rs, ok := resp.([]any)
	if len(batch) == 1 || !ok || len(rs) != len(batch) {
		// A lone command; or an entry refused as a whole (the FSM stopped after a local
		// failure): every proposal gets that.
		for _, p := range batch {
			p.done <- proposalResult{index: index, resp: resp}
		}
		return
	}
	for i, p := range batch {
		p.done <- proposalResult{index: index, resp: rs[i]}
	}
}

// encodeBatch returns the OpBatch log entry holding cmds (each an encoded App command):
// version, op, format byte, uvarint count, then each command as a uvarint length and its bytes.
func encodeBatch(cmds [][]byte) []byte {
	size := batchHeader
	for _, c := range cmds {
		size += binary.MaxVarintLen32 + len(c)
	}
	b := make([]byte, 0, size)
	b = append(b, CommandVersion, byte(OpBatch), batchFormat)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// decodeBatch parses an OpBatch payload into its commands (aliasing p). It is bounded and
// total: any input gives commands or an error, never a panic (fuzzed through FuzzFSMApply and
// FuzzDecodeBatch). Each command must be an App command: the group commit batches nothing else.
func decodeBatch(p []byte) ([]Command, error) {
	if len(p) < 1 || p[0] != batchFormat {
		return nil, fmt.Errorf("%w: batch format", ErrCommandMalformed)
	}
	p = p[1:]
	n, k := wire.Uvarint(p) // shortest form only: an entry has one encoding
	if k <= 0 || n < 2 || n > maxBatchCommands || n > uint64(len(p)) {
		return nil, fmt.Errorf("%w: batch count", ErrCommandMalformed)
	}
	p = p[k:]
	cmds := make([]Command, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := wire.Uvarint(p) // shortest form only: an entry has one encoding
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, fmt.Errorf("%w: batch command %d: length", ErrCommandMalformed, i)
		}
		c, err := DecodeCommand(p[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		if c.Op < OpAppFirst {
			return nil, fmt.Errorf("%w: batch command %d: %s is not an App command", ErrCommandMalformed, i, c.Op)
		}
		cmds = append(cmds, c)
		p = p[k+int(l):]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the batch", ErrCommandMalformed, len(p))
	}
	return cmds, nil
}

// applyBatch applies an OpBatch entry's commands in order and returns their results, one per
// command. The App sees the entry's index with the first command and 0 with the others (the
// index is the entry's: it was seen). A local failure (LocalFailure) stops the batch: the
// failure is the whole entry's result, and the FSM stops there as for any entry.
func applyBatch(app App, payload []byte, index uint64) any {
	cmds, err := decodeBatch(payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if app == nil {
		return rejectf("batch: no application state on this node")
	}
	if ba, ok := app.(BatchApp); ok {
		ops, payloads := make([]byte, len(cmds)), make([][]byte, len(cmds))
		for i, c := range cmds {
			ops[i], payloads[i] = byte(c.Op), c.Payload
		}
		out, err := ba.ApplyBatch(ops, payloads, index)
		if err != nil {
			return err
		}
		return out
	}
	out := make([]any, len(cmds))
	for i, c := range cmds {
		ix := index
		if i > 0 {
			ix = 0
		}
		res := app.Apply(byte(c.Op), c.Payload, ix)
		var lf LocalFailure
		if err, ok := res.(error); ok && errors.As(err, &lf) && lf.LocalFailure() {
			return err
		}
		out[i] = res
	}
	return out
}

// BatchApp is implemented by an App that applies the commands of one OpBatch entry in one call,
// so that they can share work: the job state stores all the chunk results of an entry in one
// disk transaction instead of one per command. ApplyBatch must give what App.Apply would on each
// command in order (the entry's index with the first, 0 with the others): one result per
// command. Its error fails the whole entry and must be a LocalFailure (the FSM then stops, as
// for any entry).
type BatchApp interface {
	ApplyBatch(ops []byte, payloads [][]byte, index uint64) ([]any, error)
}
