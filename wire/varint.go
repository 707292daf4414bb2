package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrOverlong refuses a uvarint not in its shortest form (0x80 0x00 for 0). Go's encoder
// (binary.AppendUvarint) never writes one, so only a hand-made input carries it; refusing it
// gives every value one encoding, which the decoders whose values feed a hash, a commitment or
// a comparison of encodings need.
var ErrOverlong = errors.New("uvarint not in its shortest form")

// Uvarint is binary.Uvarint that also refuses an overlong encoding: it returns the value and
// the bytes read (k > 0), or k == 0 when b ends first and k < 0 on an overflow or an overlong
// form. One helper so that every strict decoder refuses the same inputs.
func Uvarint(b []byte) (v uint64, k int) {
	v, k = binary.Uvarint(b)
	if k > 0 && k != UvarintLen(v) {
		return 0, -k
	}
	return v, k
}

// UvarintLen is the length of v's shortest (its only canonical) uvarint encoding.
func UvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// ReadUvarint is binary.ReadUvarint that also refuses an overlong encoding (ErrOverlong).
// io.EOF is returned as is when r ends before the first byte, io.ErrUnexpectedEOF after it.
func ReadUvarint(r io.ByteReader) (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, fmt.Errorf("uvarint overflows 64 bits")
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				// The last byte carries no bit: a shorter form exists.
				return 0, ErrOverlong
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("uvarint overflows 64 bits")
}
