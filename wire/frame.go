package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge is returned when a frame's announced length exceeds the
// reader's limit; the stream must then be reset, as its framing is lost.
var ErrFrameTooLarge = errors.New("frame too large")

// WriteFrame writes payload as one frame: a uvarint length then the bytes.
// One frame is one message; the framing is the same for every protocol so
// that one fuzzed decoder guards them all.
func WriteFrame(w io.Writer, payload []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame body: %w", err)
	}
	return nil
}

// FrameReader is what ReadFrame needs: a *bufio.Reader around a stream.
type FrameReader interface {
	io.Reader
	io.ByteReader
}

// ReadFrame reads one frame written by WriteFrame, refusing frames longer
// than max bytes before allocating anything for them, and a length not in
// its shortest form (ErrOverlong): WriteFrame never writes one, so each frame
// has one encoding.
func ReadFrame(r FrameReader, max int) ([]byte, error) {
	n, err := ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n <= eagerFrame {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("read frame body (%d bytes): %w", n, err)
		}
		return buf, nil
	}
	// A large frame grows with the bytes that actually arrive: a peer that
	// announces megabytes and sends nothing costs us nothing.
	var buf bytes.Buffer
	buf.Grow(eagerFrame)
	got, err := io.Copy(&buf, io.LimitReader(r, int64(n)))
	if err == nil && uint64(got) < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("read frame body (%d of %d bytes): %w", got, n, err)
	}
	return buf.Bytes(), nil
}

// eagerFrame is the largest frame ReadFrame allocates in full before its
// body arrives; longer ones are read incrementally.
const eagerFrame = 64 << 10
