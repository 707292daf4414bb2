package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// PiBlock is the size, in samples, of a π commitment block. Blocks are aligned to the job's
// sample 0, so the blocks of a chunk do not depend on how the job was cut: block b is samples
// [b·PiBlock, (b+1)·PiBlock), and a chunk's leaves are its intersections with the blocks. At
// about 4 M samples a block takes 2–15 ms on one core, so an audit can recompute a small share
// of a chunk, and a 2 s chunk has a few hundred leaves.
const PiBlock = 1 << 22

// Leaf kinds, hashed into every leaf so that a π leaf never equals a Mandelbrot one.
const (
	kindPi     = 'p'
	kindMandel = 'm'
	kindWasm   = 'w'
)

// PiLeaf is the leaf of π samples [start, end) with hits hits.
func PiLeaf(start, end, hits uint64) Hash {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64)
	b = append(b, leafPrefix, kindPi)
	b = binary.AppendUvarint(b, start)
	b = binary.AppendUvarint(b, end)
	b = binary.AppendUvarint(b, hits)
	return sha256.Sum256(b)
}

// MandelLeaf is the leaf of Mandelbrot row row with these iteration counts: the hash of
// AppendMandelLeafHeader's bytes followed by each count as a little-endian uint32.
func MandelLeaf(row uint64, counts []uint32) Hash {
	return MandelLeafBuf(nil, row, counts)
}

// MandelLeafBuf is MandelLeaf hashing through *buf, which it grows as needed and keeps for the
// next row (nil: a new buffer each call): the rows of a chunk are hashed without allocating
// each one's bytes.
func MandelLeafBuf(buf *[]byte, row uint64, counts []uint32) Hash {
	var b []byte
	if buf != nil {
		b = (*buf)[:0]
	}
	if need := MaxMandelLeafHeader + 4*len(counts); cap(b) < need {
		b = make([]byte, 0, need)
	}
	b = AppendMandelLeafHeader(b, row)
	h := len(b)
	b = b[:h+4*len(counts)]
	for i, c := range counts {
		binary.LittleEndian.PutUint32(b[h+4*i:], c)
	}
	if buf != nil {
		*buf = b
	}
	return sha256.Sum256(b)
}

// MaxMandelLeafHeader is the longest AppendMandelLeafHeader appends.
const MaxMandelLeafHeader = 2 + binary.MaxVarintLen64

// AppendMandelLeafHeader appends what a Mandelbrot row's leaf hashes before the row's counts
// (the leaf prefix, the kind and the row number), so that a decoder can write a row's counts
// as bytes right after it and hash them in place (compute.ChunkLeaves).
func AppendMandelLeafHeader(b []byte, row uint64) []byte {
	b = append(b, leafPrefix, kindMandel)
	return binary.AppendUvarint(b, row)
}

// WasmLeaf is the leaf of a WebAssembly block, items [start, end), with this encoded result (its
// reduced value and, for concat, its output bytes). A job's items are cut into a fixed number of
// blocks (compute.WasmBlocks), each a leaf, so an audit recomputes only the blocks it chose.
func WasmLeaf(start, end uint64, payload []byte) Hash {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(payload))
	b = append(b, leafPrefix, kindWasm)
	b = binary.AppendUvarint(b, start)
	b = binary.AppendUvarint(b, end)
	b = append(b, payload...)
	return sha256.Sum256(b)
}

// Block is one leaf's part of a chunk: units [Start, End) of the job.
type Block struct{ Start, End uint64 }

// PiBlocks cuts π samples [start, end) at the PiBlock boundaries: the chunk's leaves in order.
// It fails for an empty range or one of more than MaxLeaves blocks.
func PiBlocks(start, end uint64) ([]Block, error) {
	if end <= start {
		return nil, fmt.Errorf("pi blocks [%d,%d): empty range", start, end)
	}
	n := PiLeafCount(start, end)
	if n > MaxLeaves {
		return nil, fmt.Errorf("pi blocks [%d,%d): %d blocks, at most %d", start, end, n, MaxLeaves)
	}
	out := make([]Block, 0, n)
	last := (end - 1) / PiBlock
	for s := start; s < end; {
		// The next boundary only while it lies before end: in the last block of the uint64
		// range it would wrap to 0, and the loop start over from sample 0 for ever.
		e := end
		if b := s/PiBlock + 1; b <= last {
			e = b * PiBlock
		}
		out = append(out, Block{s, e})
		s = e
	}
	return out, nil
}

// PiLeafCount is how many leaves π samples [start, end) have (0 for an empty range).
func PiLeafCount(start, end uint64) uint64 {
	if end <= start {
		return 0
	}
	return (end-1)/PiBlock - start/PiBlock + 1
}

// Spans merges the blocks at the given sorted leaf indexes into maximal contiguous ranges: what
// an auditor computes, one run of the kernel each.
func Spans(blocks []Block, idx []int) []Block {
	var out []Block
	for _, i := range idx {
		if i < 0 || i >= len(blocks) {
			continue
		}
		b := blocks[i]
		if n := len(out); n > 0 && out[n-1].End == b.Start {
			out[n-1].End = b.End
			continue
		}
		out = append(out, b)
	}
	return out
}
