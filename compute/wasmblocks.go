package compute

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hydra-compute/hydra/compute/audit"
)

// WebAssembly commitments (docs/wasm.md, Audits): a job's items are cut into WasmJobBlocks
// blocks of equal size aligned to item 0 (the last one shorter), as π samples are cut into
// blocks, so a chunk's leaves do not depend on how the job was split. A chunk result carries the
// reduced value of each of its blocks (and, for concat, each block's output length); each block
// is a leaf, so an audit recomputes only the blocks it chose.

// WasmJobBlocks is how many commitment blocks a WebAssembly job has at most: a chunk therefore has
// at most that many leaves (well below audit.MaxLeaves) and its payload at most about 15 bytes
// per block more than its value, while a job of many chunks still has several blocks per chunk
// for an audit to choose from. A module's items have no known cost, so blocks are a share of
// the job, not a count of items.
const WasmJobBlocks = 4096

// wasmPayloadBlocks is the WebAssembly payload format with per-block values.
const wasmPayloadBlocks = 2

// WasmBlockItems is the size in items of a WebAssembly job's commitment blocks.
func WasmBlockItems(items uint64) uint64 {
	return max(1, items/WasmJobBlocks+min(items%WasmJobBlocks, 1))
}

// WasmBlocks cuts items r of a job of items items at its block boundaries: the chunk's leaves in
// order.
func WasmBlocks(items uint64, r Range) ([]Range, error) {
	if r.Empty() || r.End > items {
		return nil, fmt.Errorf("wasm blocks %v of %d items: empty or past the end", r, items)
	}
	b := WasmBlockItems(items)
	out := make([]Range, 0, (r.End-1)/b-r.Start/b+1)
	for s := r.Start; s < r.End; {
		e := min((s/b+1)*b, r.End)
		out = append(out, Range{s, e})
		s = e
	}
	return out, nil
}

// WasmBlock is one commitment block's result: its reduced value and, for concat, its output.
type WasmBlock struct {
	Value uint64
	Out   []byte
}

// EncodeWasmBlocksPayload encodes a WebAssembly chunk result with its blocks' results (those of
// WasmBlocks of the chunk's range, in order): format 2, the reduced value (8 bytes), the block
// count, each block's value, for concat each block's output length, then the output bytes.
func EncodeWasmBlocksPayload(r Reduce, blocks []WasmBlock) []byte {
	total, size := r.Identity(), 0
	for _, b := range blocks {
		total = r.Combine(total, b.Value)
		size += len(b.Out)
	}
	e := &encoder{b: make([]byte, 0, 9+binary.MaxVarintLen64*(1+2*len(blocks))+size)}
	e.byte1(wasmPayloadBlocks)
	e.u64(total)
	e.uvarint(uint64(len(blocks)))
	for _, b := range blocks {
		e.uvarint(b.Value)
	}
	if r == ReduceConcat {
		for _, b := range blocks {
			e.uvarint(uint64(len(b.Out)))
		}
		for _, b := range blocks {
			e.b = append(e.b, b.Out...)
		}
	}
	return e.b
}

// decodeWasmBlocks decodes a format-2 payload: the blocks' results (outputs alias b), the reduced
// value and the output. It checks the value against the blocks and the lengths against the
// output; the caller checks the block count against the range.
// strict refuses overlong uvarints (codec.go).
func decodeWasmBlocks(b []byte, r Reduce, strict bool) (blocks []WasmBlock, total uint64, out []byte, err error) {
	d := &decoder{b: b, strict: strict}
	if f := d.byte1(); d.err == nil && f != wasmPayloadBlocks {
		return nil, 0, nil, fmt.Errorf("wasm payload: unknown format %d", f)
	}
	total = d.u64()
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > WasmJobBlocks || n > uint64(len(d.b))) {
		return nil, 0, nil, fmt.Errorf("wasm payload: %d blocks in %d bytes (1 to %d)", n, len(d.b), WasmJobBlocks)
	}
	if d.err != nil {
		return nil, 0, nil, fmt.Errorf("wasm payload: %w", d.err)
	}
	blocks = make([]WasmBlock, n)
	sum := r.Identity()
	for i := range blocks {
		blocks[i].Value = d.uvarint()
		sum = r.Combine(sum, blocks[i].Value)
	}
	if r == ReduceConcat {
		lens := make([]uint64, n)
		var size uint64
		for i := range lens {
			lens[i] = d.uvarint()
			size += min(lens[i], uint64(len(b)))
		}
		if d.err != nil {
			return nil, 0, nil, fmt.Errorf("wasm payload: %w", d.err)
		}
		if size != uint64(len(d.b)) {
			return nil, 0, nil, fmt.Errorf("wasm payload: blocks of %d output bytes, %d follow", size, len(d.b))
		}
		out = d.b
		for i, l := range lens {
			blocks[i].Out, d.b = d.b[:l:l], d.b[l:]
		}
	}
	if err := d.done("wasm payload"); err != nil {
		return nil, 0, nil, err
	}
	if sum != total {
		return nil, 0, nil, errors.New("wasm payload: the blocks' values do not reduce to the chunk's")
	}
	return blocks, total, out, nil
}

// DecodeWasmBlocks returns the blocks' results of a WebAssembly chunk result with blocks (format
// 2; outputs alias b), checked against its value and output (tools and tests: the cheat build
// corrupts one block).
func DecodeWasmBlocks(b []byte, r Reduce) ([]WasmBlock, error) {
	blocks, _, _, err := decodeWasmBlocks(b, r, false)
	return blocks, err
}

// wasmLeaves returns the leaves of a WebAssembly chunk result and its value. A payload of format
// 1 (no blocks: written before block commitments) is one leaf, the whole chunk.
func wasmLeaves(w *WasmParams, r Range, payload []byte, strict bool) ([]audit.Hash, uint64, error) {
	if len(payload) > 0 && payload[0] == payloadFormat {
		v, _, err := DecodeWasmPayload(payload, w.Reduce)
		if err != nil {
			return nil, 0, err
		}
		return []audit.Hash{audit.WasmLeaf(r.Start, r.End, payload)}, v, nil
	}
	ranges, err := WasmBlocks(w.Items, r)
	if err != nil {
		return nil, 0, err
	}
	blocks, total, _, err := decodeWasmBlocks(payload, w.Reduce, strict)
	if err != nil {
		return nil, 0, err
	}
	if len(blocks) != len(ranges) {
		return nil, 0, fmt.Errorf("wasm payload: %d blocks, the range %v has %d", len(blocks), r, len(ranges))
	}
	leaves := make([]audit.Hash, len(blocks))
	for i, b := range blocks {
		leaves[i] = audit.WasmLeaf(ranges[i].Start, ranges[i].End, EncodeWasmPayload(b.Value, b.Out))
	}
	return leaves, total, nil
}
