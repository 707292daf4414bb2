package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrame_RoundTrip(t *testing.T) {
	var buf bytes.Buffer
	// The last one is longer than eagerFrame: it is read incrementally.
	msgs := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("ab"), 300), bytes.Repeat([]byte("cd"), eagerFrame)}
	for _, m := range msgs {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for _, want := range msgs {
		got, err := ReadFrame(r, 4*eagerFrame)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d bytes", len(got), len(want))
		}
	}
	if _, err := ReadFrame(r, 1000); err != io.EOF {
		t.Fatalf("at end: err = %v, want io.EOF", err)
	}
}

func TestFrame_LimitAndTruncation(t *testing.T) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, make([]byte, 101))
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(buf.Bytes())), 100); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over limit: err = %v, want ErrFrameTooLarge", err)
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(buf.Bytes()[:50])), 1000); err == nil || err == io.EOF {
		t.Fatalf("truncated body: err = %v, want a read error", err)
	}
	// A large frame cut short is an error too, not a short payload.
	buf.Reset()
	_ = WriteFrame(&buf, make([]byte, 2*eagerFrame))
	if got, err := ReadFrame(bufio.NewReader(bytes.NewReader(buf.Bytes()[:eagerFrame])), 4*eagerFrame); !errors.Is(err, io.ErrUnexpectedEOF) || got != nil {
		t.Fatalf("truncated large body: %d bytes, err = %v, want io.ErrUnexpectedEOF", len(got), err)
	}
	// A huge announced length is refused before any allocation.
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], 1<<62)
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(hdr[:n])), MaxStreamFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge header: err = %v, want ErrFrameTooLarge", err)
	}
}

// FuzzReadFrame checks that no input makes ReadFrame panic, allocate past
// its limit or accept something WriteFrame would not have written.
func FuzzReadFrame(f *testing.F) {
	frame := func(p []byte) []byte {
		var b bytes.Buffer
		_ = WriteFrame(&b, p)
		return b.Bytes()
	}
	f.Add([]byte{}, 64)
	f.Add(frame(nil), 64)
	f.Add(frame([]byte(`{"data":{"x":1}}`)), 64)
	f.Add(frame(bytes.Repeat([]byte{0xff}, 100)), 64)                                   // over the limit
	f.Add(frame([]byte("hello"))[:3], 64)                                               // truncated body
	f.Add([]byte{0x80, 0x80, 0x80}, 64)                                                 // truncated varint
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 64) // varint overflow
	f.Add(append(frame([]byte("a")), frame([]byte("b"))...), 64)                        // two frames
	f.Add([]byte{0x81, 0x00, 'a'}, 64)                                                  // overlong length
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<20 {
			max = 1 << 10
		}
		src := bytes.NewReader(data)
		r := bufio.NewReader(src)
		got, err := ReadFrame(r, max)
		if err != nil {
			if got != nil {
				t.Fatalf("error %v with a payload", err)
			}
			return
		}
		if len(got) > max {
			t.Fatalf("frame of %d bytes accepted with limit %d", len(got), max)
		}
		// What was read is exactly the frame WriteFrame writes for the
		// payload (its header in the shortest form) at the input's start.
		// Consumed: what left the source, less what bufio holds unread (an
		// input past bufio's 4 KiB is not all in its buffer).
		consumed := len(data) - src.Len() - r.Buffered()
		if !bytes.Equal(data[:consumed], frame(got)) {
			t.Fatalf("read % x as the payload %q, whose frame is % x", data[:consumed], got, frame(got))
		}
	})
}
