package compute

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxChunkHistory bounds the per-chunk history a job keeps: past it the oldest quarter is
// dropped (deterministically, so every replica keeps the same records). 32,768 records take
// about 1 MiB; a Mandelbrot job has at most MaxMandelSide chunks, so only long π jobs drop any.
const MaxChunkHistory = 32768

// packedRecord is a ChunkRecord as a job's history keeps it: 40 bytes, the node as an index into the
// job's node table.
type packedRecord struct {
	start, end uint64
	hits       uint64 // π: the chunk's hits (so a client can draw the estimate converging)
	node       uint32
	secs       float32
	at         int64 // commit time (the Results command's time), Unix nanoseconds
}

// chunkHistory is a job's accepted chunks in commit order. Record i (0-based, counting dropped
// ones) has sequence number i; recs holds sequence numbers first … first+len(recs)−1.
type chunkHistory struct {
	first  uint64
	recs   []packedRecord
	nodes  []string
	nodeIx map[string]uint32
}

func (h *chunkHistory) add(r Range, hits uint64, node string, secs float64, at time.Time) {
	if h.nodeIx == nil {
		h.nodeIx = map[string]uint32{}
	}
	ix, ok := h.nodeIx[node]
	if !ok {
		ix = uint32(len(h.nodes))
		h.nodes = append(h.nodes, node)
		h.nodeIx[node] = ix
	}
	if len(h.recs) >= MaxChunkHistory {
		drop := MaxChunkHistory / 4
		n := copy(h.recs, h.recs[drop:])
		h.recs = h.recs[:n]
		h.first += uint64(drop)
	}
	h.recs = append(h.recs, packedRecord{start: r.Start, end: r.End, hits: hits, node: ix, secs: float32(secs), at: timeNanos(at)})
}

// next is the sequence number the next accepted chunk will get.
func (h *chunkHistory) next() uint64 { return h.first + uint64(len(h.recs)) }

// Chunk history snapshot encoding (inside snapJob.History, snapshot version 2): format byte 1,
// uvarint first, uvarint node count, the node IDs, uvarint record count, then per record uvarint
// start, uvarint length, uvarint hits, uvarint node index, 8-byte float64 seconds, varint commit
// nanoseconds.
const historyFormat = 2

func (h *chunkHistory) encode() []byte {
	if h.next() == 0 {
		return nil
	}
	e := &encoder{b: make([]byte, 0, 16+len(h.recs)*16)}
	e.byte1(historyFormat)
	e.uvarint(h.first)
	e.uvarint(uint64(len(h.nodes)))
	for _, n := range h.nodes {
		e.str(n)
	}
	e.uvarint(uint64(len(h.recs)))
	for _, r := range h.recs {
		e.uvarint(r.start)
		e.uvarint(r.end - r.start)
		e.uvarint(r.hits)
		e.uvarint(uint64(r.node))
		e.f64(float64(r.secs))
		e.varint(r.at)
	}
	return e.b
}

// decodeHistory reads what encode wrote, checking every record against the job's range. It
// never panics and allocates no more than the input justifies. Its uvarints are read leniently,
// as applies read (codec.go): the job state wrote them, and an overlong one means the same value.
func decodeHistory(b []byte, total Range) (chunkHistory, error) {
	var h chunkHistory
	if len(b) == 0 {
		return h, nil
	}
	d := &decoder{b: b}
	if f := d.byte1(); d.err == nil && f != historyFormat {
		return h, fmt.Errorf("chunk history: format %d, this build reads %d", f, historyFormat)
	}
	h.first = d.uvarint()
	nn := d.uvarint()
	if d.err == nil && nn > uint64(len(d.b)) {
		return h, errors.New("chunk history: node count exceeds the input")
	}
	h.nodeIx = map[string]uint32{}
	for i := uint64(0); i < nn && d.err == nil; i++ {
		n := d.str(MaxIDLen, "node id")
		if _, dup := h.nodeIx[n]; dup {
			return h, fmt.Errorf("chunk history: node %q twice", n)
		}
		h.nodeIx[n] = uint32(len(h.nodes))
		h.nodes = append(h.nodes, n)
	}
	nr := d.uvarint()
	if d.err == nil && (nr > MaxChunkHistory || nr*13 > uint64(len(d.b))) {
		return h, fmt.Errorf("chunk history: %d records is over the limit or the input", nr)
	}
	h.recs = make([]packedRecord, 0, nr)
	for i := uint64(0); i < nr && d.err == nil; i++ {
		start, n, hits, node, secs, at := d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint(), d.f64(), d.varint()
		if d.err != nil {
			break
		}
		r := Range{start, start + n}
		if n == 0 || r.End < start || !total.Contains(r) || hits > n || node >= uint64(len(h.nodes)) || !isFinite(secs) || secs < 0 {
			return h, fmt.Errorf("chunk history: bad record %d", i)
		}
		h.recs = append(h.recs, packedRecord{start: r.Start, end: r.End, hits: hits, node: uint32(node), secs: float32(secs), at: at})
	}
	if err := d.done("chunk history"); err != nil {
		return h, err
	}
	if h.first > math.MaxUint64-uint64(len(h.recs)) {
		return h, errors.New("chunk history: sequence overflows")
	}
	return h, nil
}
