package compute

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// Result payloads: what a worker sends for a chunk and what the job state stores on disk.
// π: the hit count (a few bytes). Mandelbrot: the rows' iteration counts, delta-coded between
// neighbouring pixels (neighbours are usually close), as zigzag uvarints, deflated — typically
// 5–20× smaller than raw counts, so a log entry of many rows stays small. Decoders are bounded
// by the size the range implies and never panic.

const payloadFormat = 1

// EncodePiPayload encodes a π chunk result: its hit count behind the payload format byte, a
// few bytes, which is all the job state needs to add it to the estimate exactly.
func EncodePiPayload(hits uint64) []byte {
	e := &encoder{}
	e.byte1(payloadFormat)
	e.uvarint(hits)
	return e.b
}

// DecodePiPayload decodes a π chunk result for a chunk of units samples; hits above units are
// impossible and rejected.
func DecodePiPayload(b []byte, units uint64) (uint64, error) {
	d := &decoder{b: b}
	if f := d.byte1(); d.err == nil && f != payloadFormat {
		return 0, fmt.Errorf("pi payload: unknown format %d", f)
	}
	hits := d.uvarint()
	if err := d.done("pi payload"); err != nil {
		return 0, err
	}
	if hits > units {
		return 0, fmt.Errorf("pi payload: %d hits for %d samples", hits, units)
	}
	return hits, nil
}

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // level is valid: never fails
	return w
}}

// A count's zig-zag delta takes at most 3 uvarint bytes (21 bits) before deflate, which
// wire.MaxResult assumes of wire.MaxResultCounts counts.
const _ = uint(1<<21 - 1 - 2*MaxMandelIter)

// EncodeMandelPayload encodes the counts of whole rows (row-major, len = rows × width).
func EncodeMandelPayload(counts []uint32) []byte {
	raw := make([]byte, 0, len(counts)+16)
	prev := int64(0)
	for _, c := range counts {
		d := int64(c) - prev
		raw = binary.AppendUvarint(raw, uint64(d<<1)^uint64(d>>63))
		prev = int64(c)
	}
	var out bytes.Buffer
	out.WriteByte(payloadFormat)
	var n [binary.MaxVarintLen64]byte
	out.Write(n[:binary.PutUvarint(n[:], uint64(len(counts)))])
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(&out)
	w.Write(raw) // writes to a bytes.Buffer do not fail
	w.Close()
	flateWriters.Put(w)
	return out.Bytes()
}

// flateReaders and inflateBufs keep DecodeMandelPayload's inflater (its tables are tens of
// kilobytes) and its scratch buffer across calls: every replica decodes every Mandelbrot result
// it applies, and allocating them each time cost as much as the decoding.
var (
	flateReaders = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}
	inflateBufs  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// DecodeMandelPayload decodes counts, checking there are exactly want of them and none above
// maxIter. It inflates at most what want counts can take, so a hostile payload cannot expand,
// and allocates the counts only once the payload has inflated to at least a byte each: a
// payload of a few bytes cannot make it allocate want counts (4 bytes each, a gigabyte for the
// largest image) before its header is even read.
func DecodeMandelPayload(b []byte, want int, maxIter uint32) ([]uint32, error) {
	if want < 0 {
		return nil, fmt.Errorf("mandelbrot payload: %d counts wanted", want)
	}
	raw, release, err := inflateMandel(b, want, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if len(raw) < want { // every count takes at least one byte
		return nil, fmt.Errorf("mandelbrot payload: %d bytes for %d counts", len(raw), want)
	}
	out := make([]uint32, want)
	if err := decodeMandelRaw(out, raw, maxIter); err != nil {
		return nil, err
	}
	return out, nil
}

// inflateMandel checks a Mandelbrot payload's header for want counts and inflates its deltas
// (at most what want counts can take, so a hostile payload cannot expand); release gives the
// buffer behind raw back.
func inflateMandel(b []byte, want int, strict bool) (raw []byte, release func(), err error) {
	d := &decoder{b: b, strict: strict}
	if f := d.byte1(); d.err == nil && f != payloadFormat {
		return nil, nil, fmt.Errorf("mandelbrot payload: unknown format %d", f)
	}
	n := d.uvarint()
	if d.err != nil {
		return nil, nil, fmt.Errorf("mandelbrot payload: %w", d.err)
	}
	if n != uint64(want) {
		return nil, nil, fmt.Errorf("mandelbrot payload: %d counts, want %d", n, want)
	}
	limit := int64(want)*binary.MaxVarintLen32 + 1
	r := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(r)
	r.(flate.Resetter).Reset(bytes.NewReader(d.b), nil) // a bytes.Reader: never fails
	buf := inflateBufs.Get().(*bytes.Buffer)
	release = func() {
		if buf.Cap() <= 8<<20 { // do not keep a rare huge one
			inflateBufs.Put(buf)
		}
	}
	buf.Reset()
	// Most deltas take one or two bytes; past a few MiB (more than a result holds,
	// wire.MaxResultCounts) the buffer grows as the stream really inflates, so that a short
	// hostile payload claiming many counts does not get its room up front.
	buf.Grow(min(2*want+64, int(limit), 4<<20))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit)); err != nil {
		release()
		return nil, nil, fmt.Errorf("mandelbrot payload: inflate: %w", err)
	}
	raw = buf.Bytes()
	if int64(len(raw)) >= limit {
		release()
		return nil, nil, fmt.Errorf("mandelbrot payload: inflates past %d bytes", limit-1)
	}
	return raw, release, nil
}

// decodeCounts decodes len(out) counts into out from raw, each a zig-zag delta from the one
// before (prev before the first) as a uvarint, checking each against maxIter; base is the index
// of out[0] among the payload's counts, for errors. It returns the rest of raw and the last count.
// strict refuses an overlong uvarint (codec.go). The deflate stream around the deltas has many
// encodings of the same bytes anyway, which is why a Mandelbrot leaf hashes the decoded row.
func decodeCounts(out []uint32, raw []byte, prev int64, maxIter uint32, base int, strict bool) ([]byte, int64, error) {
	for i := range out {
		var u uint64
		if len(raw) > 0 && raw[0] < 0x80 { // one byte: most deltas
			u, raw = uint64(raw[0]), raw[1:]
		} else {
			var k int
			u, k = binary.Uvarint(raw)
			if k <= 0 {
				return nil, 0, fmt.Errorf("mandelbrot payload: count %d truncated", base+i)
			}
			if strict && k != wire.UvarintLen(u) {
				return nil, 0, fmt.Errorf("mandelbrot payload: count %d: %w", base+i, wire.ErrOverlong)
			}
			raw = raw[k:]
		}
		v := prev + (int64(u>>1) ^ -int64(u&1))
		if v < 0 || v > int64(maxIter) {
			return nil, 0, fmt.Errorf("mandelbrot payload: count %d = %d outside 0–%d", base+i, v, maxIter)
		}
		out[i] = uint32(v)
		prev = v
	}
	return raw, prev, nil
}

// decodeMandelRaw decodes exactly len(out) counts into out from an inflated payload.
func decodeMandelRaw(out []uint32, raw []byte, maxIter uint32) error {
	raw, _, err := decodeCounts(out, raw, 0, maxIter, 0, false)
	if err != nil {
		return err
	}
	if len(raw) != 0 {
		return fmt.Errorf("mandelbrot payload: %d trailing bytes", len(raw))
	}
	return nil
}

// leafBufs keep the scratch mandelLeaves decodes and hashes each row in.
var leafBufs = sync.Pool{New: func() any { return new(leafBuf) }}

type leafBuf struct {
	counts []uint32
	bytes  []byte
}

// mandelLeaves decodes the payload of rows first… (rows of width w each) and returns their
// leaves (audit.MandelLeaf of each row's counts), a row at a time in one reused scratch row:
// no counts array of the whole chunk and no allocation per row. It checks what
// DecodeMandelPayload checks.
func mandelLeaves(payload []byte, first uint64, rows, w int, maxIter uint32, strict bool) ([]audit.Hash, error) {
	if rows < 0 || w <= 0 {
		return nil, fmt.Errorf("mandelbrot payload: %d rows of %d", rows, w)
	}
	raw, release, err := inflateMandel(payload, rows*w, strict)
	if err != nil {
		return nil, err
	}
	defer release()
	lb := leafBufs.Get().(*leafBuf)
	defer func() {
		if cap(lb.counts) <= 1<<18 { // do not keep a rare huge one
			leafBufs.Put(lb)
		}
	}()
	if cap(lb.counts) < w {
		lb.counts = make([]uint32, w)
	}
	row := lb.counts[:w]
	leaves := make([]audit.Hash, rows)
	prev := int64(0)
	for y := range leaves {
		if raw, prev, err = decodeCounts(row, raw, prev, maxIter, y*w, strict); err != nil {
			return nil, err
		}
		leaves[y] = audit.MandelLeafBuf(&lb.bytes, first+uint64(y), row)
	}
	if len(raw) != 0 {
		return nil, fmt.Errorf("mandelbrot payload: %d trailing bytes", len(raw))
	}
	return leaves, nil
}

// EncodeWasmPayload encodes a WebAssembly result without blocks (format 1): the reduced value of
// its items and, for concat, their output bytes in item order (raw: module output is often
// already dense). It is what a block's leaf hashes; chunk results carry their blocks
// (EncodeWasmBlocksPayload).
func EncodeWasmPayload(value uint64, out []byte) []byte {
	b := make([]byte, 0, 9+len(out))
	b = append(b, payloadFormat)
	b = binary.LittleEndian.AppendUint64(b, value)
	return append(b, out...)
}

// DecodeWasmPayload decodes a WebAssembly chunk result, with its blocks' values (format 2,
// EncodeWasmBlocksPayload) or without (format 1): its reduced value and, for concat, its output
// bytes. The blocks are checked against the value and the output, not against a range
// (ChunkLeaves does).
func DecodeWasmPayload(b []byte, r Reduce) (value uint64, out []byte, err error) {
	if len(b) > 0 && b[0] == wasmPayloadBlocks {
		_, value, out, err = decodeWasmBlocks(b, r, false)
		return value, out, err
	}
	if len(b) < 9 || b[0] != payloadFormat {
		return 0, nil, fmt.Errorf("wasm payload: %d bytes, not a value", len(b))
	}
	if r != ReduceConcat && len(b) > 9 {
		return 0, nil, fmt.Errorf("wasm payload: %d output bytes for reduce %s", len(b)-9, r)
	}
	return binary.LittleEndian.Uint64(b[1:9]), b[9:], nil
}
