package compute

import (
	"errors"
	"fmt"

	"github.com/hydra-compute/hydra/compute/audit"
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
	if len(b) > 0 && b[0] == payloadFormat {
		return nil, 0, ErrNoCommitment
	}
	blocks, err := audit.PiBlocks(r.Start, r.End)
	if err != nil {
		return nil, 0, fmt.Errorf("pi payload: %w", err)
	}
	d := &decoder{b: b}
	if f := d.byte1(); d.err == nil && f != piPayloadBlocks {
		return nil, 0, fmt.Errorf("pi payload: unknown format %d", f)
	}
	total = d.uvarint()
	n := d.uvarint()
	if d.err == nil && n != uint64(len(blocks)) {
		return nil, 0, fmt.Errorf("pi payload: %d blocks, the range %v has %d", n, r, len(blocks))
	}
	if d.err != nil {
		return nil, 0, fmt.Errorf("pi payload: %w", d.err)
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
// value (0 for Mandelbrot). It validates the payload as the job state does.
func ChunkLeaves(spec JobSpec, r Range, payload []byte) (leaves []audit.Hash, hits uint64, err error) {
	switch spec.Kind {
	case KindPi:
		blocks, err := audit.PiBlocks(r.Start, r.End)
		if err != nil {
			return nil, 0, err
		}
		bh, total, err := DecodePiBlocks(payload, r)
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
			return nil, 0, fmt.Errorf("mandelbrot chunk of %d rows: at most %d", r.Len(), audit.MaxLeaves)
		}
		w := spec.Mandel.Width
		bp := countBufs.Get().(*[]uint32)
		defer func() {
			if cap(*bp) <= 4<<20 { // do not keep a rare huge one
				countBufs.Put(bp)
			}
		}()
		if n := int(r.Len()) * w; cap(*bp) < n {
			*bp = make([]uint32, n)
		} else {
			*bp = (*bp)[:n]
		}
		counts := *bp
		if err := decodeMandelInto(counts, payload, uint32(spec.Mandel.MaxIter)); err != nil {
			return nil, 0, err
		}
		leaves = make([]audit.Hash, r.Len())
		for i := range leaves {
			leaves[i] = audit.MandelLeaf(r.Start+uint64(i), counts[i*w:(i+1)*w])
		}
		return leaves, 0, nil
	case KindWasm:
		if spec.Wasm == nil {
			return nil, 0, errors.New("wasm job without parameters")
		}
		return wasmLeaves(spec.Wasm, r, payload)
	}
	return nil, 0, fmt.Errorf("kind %q has no commitment", spec.Kind)
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
