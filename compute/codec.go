package compute

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// The binary writer and reader behind every command and payload encoding: uvarints, varints,
// fixed 64-bit words and length-prefixed byte strings. The reader never panics: it records the
// first error (truncation, an oversized length) and returns zero values after it, so decoders
// check one error at the end.
//
// A strict reader also refuses a (var)int not in its shortest form (wire.ErrOverlong): the
// encoder never writes one, so only a hand-made payload carries it. The coordinator reads a
// chunk result strictly before proposing it (CheckCommitment), so that a result has one
// encoding. Applies stay lenient: an older build's coordinator may have let such a result into
// the log, and a replica that refused what its peers accepted would diverge from them (a
// rolling upgrade runs both builds on one log). Every value decoded leniently means the same as
// its shortest form, so nothing else differs.

type encoder struct{ b []byte }

func (e *encoder) byte1(v byte)        { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64)    { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)      { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) u64(v uint64)        { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) f64(v float64)       { e.u64(math.Float64bits(v)) }
func (e *encoder) bytes(v []byte)      { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)        { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) time(t time.Time)    { e.varint(timeNanos(t)) }
func (e *encoder) dur(d time.Duration) { e.varint(int64(d)) }

// timeNanos encodes the zero time as 0, so "not set" survives a round trip.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// errTruncated is the reader's error for input that ends early.
var errTruncated = errors.New("truncated")

type decoder struct {
	b      []byte
	err    error
	strict bool // refuse overlong (var)ints
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(errTruncated)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	if d.strict && n != wire.UvarintLen(v) {
		d.fail(wire.ErrOverlong)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	if d.strict && n != wire.UvarintLen(uint64(v<<1)^uint64(v>>63)) { // v's zig-zag form, as binary.PutVarint writes it
		d.fail(wire.ErrOverlong)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(errTruncated)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

// bytes reads a length-prefixed byte string of at most limit bytes. The result aliases the input.
func (d *decoder) bytes(limit int, what string) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.fail(fmt.Errorf("%s: %d bytes exceeds the limit of %d", what, n, limit))
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(limit int, what string) string { return string(d.bytes(limit, what)) }
func (d *decoder) time() time.Time                   { return nanosTime(d.varint()) }
func (d *decoder) dur() time.Duration                { return time.Duration(d.varint()) }

// done returns the first error, or an error if bytes are left over (a sign of a format mismatch).
func (d *decoder) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("decode %s: %d trailing bytes", what, len(d.b))
	}
	return nil
}

// hash reads a 32-byte digest (a commitment, a leaf or a seed).
func (d *decoder) hash() (h [32]byte) {
	if d.err != nil || len(d.b) < 32 {
		d.fail(errTruncated)
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[32:]
	return h
}

// encodeChallenge writes a Challenge's seed and chunks (its time and unaudited flag are
// written by the command that carries it).
func encodeChallenge(e *encoder, c Challenge) {
	e.b = append(e.b, c.Seed[:]...)
	e.uvarint(uint64(len(c.Items)))
	for _, it := range c.Items {
		e.str(it.Job)
		e.uvarint(it.Start)
	}
}

// decodeChallenge reads what encodeChallenge wrote into c, bounded like every list.
func decodeChallenge(d *decoder, c *Challenge) error {
	c.Seed = audit.Seed(d.hash())
	n := d.uvarint()
	if n > MaxBatchChunks {
		return fmt.Errorf("decode challenge: %d chunks exceeds %d", n, MaxBatchChunks)
	}
	if d.err == nil && n > uint64(len(d.b)/2+1) {
		return fmt.Errorf("decode challenge: %d chunks in %d bytes", n, len(d.b))
	}
	c.Items = make([]ChunkRef, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Items = append(c.Items, ChunkRef{Job: d.str(MaxIDLen, "job id"), Start: d.uvarint()})
	}
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
