package compute

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// Commitments (docs/design.md §4): a chunk result is cut into fixed-size blocks whose leaves
// (compute/audit) are hashed into a Merkle root, the chunk's commitment. π results carry the hits
// of every block (payload format 2), Mandelbrot results already carry every row.

// piPayloadBlocks is the π payload format with per-block hits.
const piPayloadBlocks = 2

// ErrNoCommitment is returned for a result whose payload cannot be audited: a π payload without
// per-block hits (format 1, written before audits existed).
var ErrNoCommitment = errors.New("result carries no per-block sub-results to commit to")

// EncodePiBlocksPayload encodes a π chunk result with the hits of each of its blocks
// (audit.PiBlocks of the chunk's range, in order): format 2, the total, the count, the hits.
func EncodePiBlocksPayload(blockHits []uint64) []byte {
	var total uint64
	for _, h := range blockHits {
		total += h
	}
	e := &encoder{}
	e.byte1(piPayloadBlocks)
	e.uvarint(total)
	e.uvarint(uint64(len(blockHits)))
	for _, h := range blockHits {
		e.uvarint(h)
	}
	return e.b
}

// DecodePiBlocks decodes a π payload of format 2 for samples r: the hits of each block of r and
// their total. It checks the block count, each block's hits against its size, and the total.
func DecodePiBlocks(b []byte, r Range) (blockHits []uint64, total uint64, err error) {
	return decodePiBlocks(b, r, false)
}

// decodePiBlocks is DecodePiBlocks; strict refuses overlong uvarints (codec.go).
func decodePiBlocks(b []byte, r Range, strict bool) (blockHits []uint64, total uint64, err error) {
	if len(b) > 0 && b[0] == payloadFormat {
		return nil, 0, ErrNoCommitment
	}
	if nb := audit.PiLeafCount(r.Start, r.End); nb == 0 || nb > audit.MaxLeaves {
		return nil, 0, fmt.Errorf("pi payload: range %v of %d blocks, 1 to %d", r, nb, audit.MaxLeaves)
	}
	d := &decoder{b: b, strict: strict}
	if f := d.byte1(); d.err == nil && f != piPayloadBlocks {
		return nil, 0, fmt.Errorf("pi payload: unknown format %d", f)
	}
	total = d.uvarint()
	n := d.uvarint()
	if nb := audit.PiLeafCount(r.Start, r.End); d.err == nil && n != nb {
		return nil, 0, fmt.Errorf("pi payload: %d blocks, the range %v has %d", n, r, nb)
	}
	if d.err == nil && uint64(len(d.b)) < n {
		// Each block's hits take a byte at least: the blocks are cut (a megabyte for the
		// largest range) only for a payload that can hold them.
		d.fail(errTruncated)
	}
	if d.err != nil {
		return nil, 0, fmt.Errorf("pi payload: %w", d.err)
	}
	blocks, err := audit.PiBlocks(r.Start, r.End)
	if err != nil {
		return nil, 0, fmt.Errorf("pi payload: %w", err)
	}
	blockHits = make([]uint64, len(blocks))
	var sum uint64
	for i, bl := range blocks {
		h := d.uvarint()
		if d.err == nil && h > bl.End-bl.Start {
			return nil, 0, fmt.Errorf("pi payload: block %d: %d hits for %d samples", i, h, bl.End-bl.Start)
		}
		blockHits[i] = h
		sum += h
	}
	if err := d.done("pi payload"); err != nil {
		return nil, 0, err
	}
	if sum != total {
		return nil, 0, fmt.Errorf("pi payload: blocks sum to %d hits, total says %d", sum, total)
	}
	return blockHits, total, nil
}

// DecodePiResult decodes a π payload of either format (with per-block hits or without): the
// hits of samples r.
func DecodePiResult(b []byte, r Range) (uint64, error) {
	if len(b) > 0 && b[0] == piPayloadBlocks {
		_, total, err := DecodePiBlocks(b, r)
		return total, err
	}
	return DecodePiPayload(b, r.Len())
}

// ChunkLeaves returns the commitment leaves of a chunk result of a job with spec: one per π
// block, one per Mandelbrot row, one per WebAssembly block; and the π hits or the wasm reduced
// value (0 for Mandelbrot). It validates the payload as the job state does (leniently: an
// overlong uvarint is read as its value, codec.go; CheckCommitment is strict).
func ChunkLeaves(spec JobSpec, r Range, payload []byte) (leaves []audit.Hash, hits uint64, err error) {
	return chunkLeaves(spec, r, payload, false)
}

// chunkLeaves is ChunkLeaves; strict refuses a payload with an overlong uvarint (codec.go).
func chunkLeaves(spec JobSpec, r Range, payload []byte, strict bool) (leaves []audit.Hash, hits uint64, err error) {
	if r.Empty() {
		// No unit to commit to, whatever the kind (as ResultLeaves refuses it).
		return nil, 0, fmt.Errorf("chunk %v: empty range", r)
	}
	switch spec.Kind {
	case KindPi:
		bh, total, err := decodePiBlocks(payload, r, strict)
		if err != nil {
			return nil, 0, err
		}
		blocks, err := audit.PiBlocks(r.Start, r.End)
		if err != nil {
			return nil, 0, err
		}
		leaves = make([]audit.Hash, len(blocks))
		for i, bl := range blocks {
			leaves[i] = audit.PiLeaf(bl.Start, bl.End, bh[i])
		}
		return leaves, total, nil
	case KindMandelbrot:
		if spec.Mandel == nil {
			return nil, 0, errors.New("mandelbrot job without parameters")
		}
		if r.Len() > audit.MaxLeaves {
			return nil, 0, fmt.Errorf("mandelbrot chunk %v: more than %d rows", r, audit.MaxLeaves)
		}
		leaves, err := mandelLeaves(payload, r.Start, int(r.Len()), spec.Mandel.Width, uint32(spec.Mandel.MaxIter), strict)
		return leaves, 0, err
	case KindWasm:
		if spec.Wasm == nil {
			return nil, 0, errors.New("wasm job without parameters")
		}
		return wasmLeaves(spec.Wasm, r, payload, strict)
	}
	return nil, 0, fmt.Errorf("kind %q has no commitment", spec.Kind)
}

// ResultLeaves returns what the job state keeps of an audited chunk result when it is applied:
// its leaf count and its π hits or wasm value (0 for Mandelbrot). It validates what it decodes
// but checks no commitment and hashes nothing: the coordinator checked the result against its
// root once, before proposing it (CheckCommitment), so the replicas do not each decode and hash
// every Mandelbrot row again. A Mandelbrot payload is not decoded at all; an audit recomputes
// its leaves from the stored payload and holds them against the root (docs/audits.md).
func ResultLeaves(spec JobSpec, r Range, payload []byte) (leaves int, hits uint64, err error) {
	switch spec.Kind {
	case KindPi:
		bh, total, err := DecodePiBlocks(payload, r)
		return len(bh), total, err
	case KindMandelbrot:
		if spec.Mandel == nil {
			return 0, 0, errors.New("mandelbrot job without parameters")
		}
		if r.Empty() || r.Len() > audit.MaxLeaves {
			return 0, 0, fmt.Errorf("mandelbrot chunk %v: empty or more than %d rows", r, audit.MaxLeaves)
		}
		// Its header only (format and count): inflating it is what the coordinator's check did.
		d := &decoder{b: payload}
		f, n := d.byte1(), d.uvarint()
		switch {
		case d.err != nil:
			return 0, 0, fmt.Errorf("mandelbrot payload: %w", d.err)
		case f != payloadFormat:
			return 0, 0, fmt.Errorf("mandelbrot payload: unknown format %d", f)
		case n != r.Len()*uint64(spec.Mandel.Width):
			return 0, 0, fmt.Errorf("mandelbrot payload: %d counts, want %d", n, r.Len()*uint64(spec.Mandel.Width))
		}
		return int(r.Len()), 0, nil
	}
	l, v, err := ChunkLeaves(spec, r, payload)
	return len(l), v, err
}

// CheckCommitment checks a chunk result against the commitment it came with: its payload
// decodes as the result of r and its leaves hash to root. The coordinator runs it once per
// result, before proposing it, so that no payload that differs from its commitment gets into the
// log (ResultLeaves trusts the log). It reads the payload strictly: a uvarint not in its
// shortest form is refused (wire.ErrOverlong), so that the value a leaf or the job's result
// holds has one encoding in the log and the result store.
//
// It first holds the range to what a worker can have computed: inside the job, and for
// Mandelbrot at most wire.MaxResultCounts counts (the compute child returns no more in one
// result). A worker may hand in a result of an earlier term for any range nobody holds, and the
// coordinator checks it before the job state does: a π range in the last block of the uint64
// range made audit.PiBlocks run away, a range of many rows had the payload inflated to gigabytes.
func CheckCommitment(spec JobSpec, r Range, payload []byte, root audit.Hash) error {
	if total := (Range{0, spec.TotalUnits()}); r.Empty() || !total.Contains(r) {
		return fmt.Errorf("commitment: chunk %v outside the job's %v", r, total)
	}
	if m := spec.Mandel; spec.Kind == KindMandelbrot && m != nil && r.Len()*uint64(m.Width) > wire.MaxResultCounts {
		return fmt.Errorf("commitment: chunk %v of %d rows of %d: more than the %d counts of a result", r, r.Len(), m.Width, wire.MaxResultCounts)
	}
	if w := spec.Wasm; spec.Kind == KindWasm && w != nil && len(payload) > 0 && payload[0] == payloadFormat {
		// A value without blocks is one leaf, but its auditor recomputes the chunk's blocks
		// and answers their leaves, which the Audit command refuses as the wrong count: the
		// audit could never be answered, and the job never finish. No build sends it for more
		// than a block (the child writes it only for a task that finished nothing).
		if b := WasmBlockItems(w.Items); (r.End-1)/b != r.Start/b {
			return fmt.Errorf("commitment: a wasm value without blocks for chunk %v, which spans several blocks", r)
		}
	}
	leaves, _, err := chunkLeaves(spec, r, payload, true)
	if err != nil {
		return fmt.Errorf("commitment: %w", err)
	}
	if audit.Root(leaves) != root {
		return ErrCommitmentMismatch
	}
	return nil
}

// CheckResults is the coordinator's check of results before it proposes them: each result of an
// auditable kind against its commitment (CheckCommitment). spec gives a job's spec (false: an
// unknown job, left to the job state to refuse). It returns the results that pass, the index in
// items of each, and a Rejection (its Index in items) for each that does not; MergeRefused
// turns the outcome of those that passed into the outcome of all of items.
func CheckResults(items []ChunkResult, spec func(job string) (JobSpec, bool)) (ok []ChunkResult, idx []int, refused []Rejection) {
	ok, idx = make([]ChunkResult, 0, len(items)), make([]int, 0, len(items))
	type known struct {
		spec  JobSpec
		found bool
	}
	specs := map[string]known{} // a job's spec is read once per batch
	for i, it := range items {
		k, seen := specs[it.Job]
		if !seen {
			k.spec, k.found = spec(it.Job)
			specs[it.Job] = k
		}
		if sp := k.spec; k.found && Auditable(sp.Kind) {
			if err := CheckCommitment(sp, it.Range, it.Payload, it.Root); err != nil {
				refused = append(refused, Rejection{Index: i, Job: it.Job, Range: it.Range, Reason: err.Error()})
				continue
			}
		}
		ok, idx = append(ok, it), append(idx, i)
	}
	return ok, idx, refused
}

// CheckProposed is the leader's check of a job-state command another node forwarded (op and
// payload as EncodeCommand gives them) before it is proposed: every result of an audited Results
// command must match its commitment (CheckResults), since the replicas trust the log for that
// (ResultLeaves). The coordinator checks its own results the same way; an ex-coordinator
// forwards its last batch after losing leadership, and a member could forward anything. Other
// commands pass.
func CheckProposed(op byte, payload []byte, spec func(job string) (JobSpec, bool)) error {
	if op != OpResults {
		return nil
	}
	cmd, err := DecodeCommand(op, payload)
	if err != nil {
		return err
	}
	res, ok := cmd.(Results)
	if !ok || !res.Audited {
		return nil // not audited: the job state decodes and validates every payload itself
	}
	if _, _, refused := CheckResults(res.Items, spec); len(refused) > 0 {
		rj := refused[0]
		return fmt.Errorf("%d of %d chunk results refused, the first %s %v: %s", len(refused), len(res.Items), rj.Job, rj.Range, rj.Reason)
	}
	return nil
}

// MergeRefused renumbers out, the outcome of the results CheckResults let through, as the
// outcome of all of its items: rejections by their index in items, the refused ones among them.
func MergeRefused(out *ResultsOutcome, idx []int, refused []Rejection) *ResultsOutcome {
	if out == nil {
		return nil
	}
	if len(refused) == 0 {
		return out
	}
	m := *out
	m.Rejected = slices.Clone(refused)
	for _, rj := range out.Rejected {
		if rj.Index >= 0 && rj.Index < len(idx) {
			rj.Index = idx[rj.Index]
			m.Rejected = append(m.Rejected, rj)
		}
	}
	slices.SortFunc(m.Rejected, func(a, b Rejection) int { return cmp.Compare(a.Index, b.Index) })
	return &m
}

// ErrCommitmentMismatch is CheckCommitment's answer for a payload whose leaves do not hash to
// the root it came with.
var ErrCommitmentMismatch = errors.New("commitment does not match the result")

// MandelRoot is the commitment of Mandelbrot rows from first on, given their counts (width w
// each): what Commitment returns for their payload, without encoding and decoding it. The
// compute child, which has the counts in hand, hands it in with the result.
func MandelRoot(first uint64, w int, counts []uint32) (audit.Hash, error) {
	if w <= 0 || len(counts)%w != 0 || len(counts) == 0 || len(counts)/w > audit.MaxLeaves {
		return audit.Hash{}, fmt.Errorf("mandelbrot root: %d counts in rows of %d", len(counts), w)
	}
	leaves := make([]audit.Hash, len(counts)/w)
	var buf []byte
	for i := range leaves {
		leaves[i] = audit.MandelLeafBuf(&buf, first+uint64(i), counts[i*w:(i+1)*w])
	}
	return audit.Root(leaves), nil
}

// PiRoot is the commitment of π samples r given the hits of each of its blocks (audit.PiBlocks
// of r, in order): what Commitment returns for their payload.
func PiRoot(r Range, blockHits []uint64) (audit.Hash, error) {
	blocks, err := audit.PiBlocks(r.Start, r.End)
	if err != nil {
		return audit.Hash{}, err
	}
	if len(blocks) != len(blockHits) {
		return audit.Hash{}, fmt.Errorf("pi root: %d hits for the %d blocks of %v", len(blockHits), len(blocks), r)
	}
	leaves := make([]audit.Hash, len(blocks))
	for i, bl := range blocks {
		leaves[i] = audit.PiLeaf(bl.Start, bl.End, blockHits[i])
	}
	return audit.Root(leaves), nil
}

// Auditable reports whether results of a kind carry commitments and are audited; results of
// other kinds count at once.
func Auditable(k Kind) bool { return k == KindPi || k == KindMandelbrot || k == KindWasm }

// ChunkBlocks returns the ranges of a chunk's leaves: π blocks, Mandelbrot rows, WebAssembly
// blocks (WasmBlocks).
func ChunkBlocks(spec JobSpec, r Range) ([]Range, error) {
	switch kind := spec.Kind; kind {
	case KindPi:
		bs, err := audit.PiBlocks(r.Start, r.End)
		if err != nil {
			return nil, err
		}
		out := make([]Range, len(bs))
		for i, b := range bs {
			out[i] = Range{b.Start, b.End}
		}
		return out, nil
	case KindMandelbrot:
		if r.Empty() || r.Len() > audit.MaxLeaves {
			return nil, fmt.Errorf("mandelbrot chunk %v: empty or more than %d rows", r, audit.MaxLeaves)
		}
		out := make([]Range, r.Len())
		for i := range out {
			out[i] = Range{r.Start + uint64(i), r.Start + uint64(i) + 1}
		}
		return out, nil
	case KindWasm:
		if spec.Wasm == nil {
			return nil, errors.New("wasm job without parameters")
		}
		return WasmBlocks(spec.Wasm.Items, r)
	}
	return nil, fmt.Errorf("kind %q has no blocks", spec.Kind)
}

// Commitment returns the Merkle root of a chunk result: what a worker sends with it.
func Commitment(spec JobSpec, r Range, payload []byte) (audit.Hash, error) {
	leaves, _, err := ChunkLeaves(spec, r, payload)
	if err != nil {
		return audit.Hash{}, err
	}
	return audit.Root(leaves), nil
}

// SpanLeaves returns an auditor's answer to a block audit: the leaves of each span's result, in
// order (payloads[i] is the result of spans[i]).
func SpanLeaves(spec JobSpec, spans []Range, payloads [][]byte) ([]audit.Hash, error) {
	if len(spans) != len(payloads) {
		return nil, fmt.Errorf("span leaves: %d spans, %d results", len(spans), len(payloads))
	}
	var out []audit.Hash
	for i, sp := range spans {
		l, _, err := ChunkLeaves(spec, sp, payloads[i])
		if err != nil {
			return nil, fmt.Errorf("span %v: %w", sp, err)
		}
		out = append(out, l...)
	}
	return out, nil
}

// PiBlocksHits computes the per-block hits of π samples r with the reference kernel: what a
// worker commits to (tests and tools; the compute child computes blocks in parallel).
func PiBlocksHits(seed uint64, r Range) ([]uint64, error) {
	blocks, err := audit.PiBlocks(r.Start, r.End)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(blocks))
	for i, b := range blocks {
		out[i] = PiHits(seed, b.Start, b.End)
	}
	return out, nil
}
