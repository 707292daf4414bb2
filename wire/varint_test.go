package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestUvarint_RefusesOverlong(t *testing.T) {
	for _, b := range [][]byte{{0x80, 0x00}, {0x81, 0x80, 0x00}, {0xff, 0x00}} {
		if v, k := Uvarint(b); k >= 0 {
			t.Errorf("Uvarint(% x) = %d, %d; want an error", b, v, k)
		}
		if v, err := ReadUvarint(bytes.NewReader(b)); !errors.Is(err, ErrOverlong) {
			t.Errorf("ReadUvarint(% x) = %d, %v; want ErrOverlong", b, v, err)
		}
	}
	if _, err := ReadUvarint(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("ReadUvarint(empty) = %v, want io.EOF", err)
	}
	if _, err := ReadUvarint(bytes.NewReader([]byte{0x80})); err != io.ErrUnexpectedEOF {
		t.Errorf("ReadUvarint(0x80) = %v, want io.ErrUnexpectedEOF", err)
	}
}

// FuzzUvarint: both helpers accept exactly the shortest encodings, agree with each other and
// with encoding/binary on them, and read back what binary.AppendUvarint wrote.
func FuzzUvarint(f *testing.F) {
	for _, s := range [][]byte{{0}, {0x80, 0}, {0x80, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, k := Uvarint(b)
		rv, err := ReadUvarint(bytes.NewReader(b))
		if (k > 0) != (err == nil) || k > 0 && rv != v {
			t.Fatalf("Uvarint = %d, %d; ReadUvarint = %d, %v", v, k, rv, err)
		}
		if k > 0 && !bytes.Equal(binary.AppendUvarint(nil, v), b[:k]) {
			t.Fatalf("accepted % x, the shortest form of %d is % x", b[:k], v, binary.AppendUvarint(nil, v))
		}
		if bv, bk := binary.Uvarint(b); bk > 0 && k <= 0 && bk == len(binary.AppendUvarint(nil, bv)) {
			t.Fatalf("refused the shortest form % x of %d", b[:bk], bv)
		}
		if w := binary.AppendUvarint(nil, uint64(len(b))*0x9e3779b97f4a7c15); true {
			if got, n := Uvarint(w); n != len(w) || got != uint64(len(b))*0x9e3779b97f4a7c15 || n != UvarintLen(got) {
				t.Fatalf("round trip of % x: %d, %d", w, got, n)
			}
		}
	})
}

func TestReadFrame_RefusesOverlongLength(t *testing.T) {
	// 0x81 0x00 is 1 in two bytes: WriteFrame writes 0x01.
	if got, err := ReadFrame(bufio.NewReader(bytes.NewReader([]byte{0x81, 0x00, 'a'})), 64); !errors.Is(err, ErrOverlong) {
		t.Fatalf("ReadFrame(81 00 'a') = %q, %v; want ErrOverlong", got, err)
	}
}
