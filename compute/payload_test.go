package compute

import (
	"bytes"
	stdflate "compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// stdMandelPayload encodes counts as EncodeMandelPayload's format with the standard library's
// deflate, step by step: a check that a payload is the documented format.
func stdMandelPayload(t *testing.T, counts []uint32) []byte {
	t.Helper()
	var raw []byte
	prev := int64(0)
	for _, c := range counts {
		d := int64(c) - prev
		raw = binary.AppendUvarint(raw, uint64(d<<1)^uint64(d>>63))
		prev = int64(c)
	}
	out := []byte{payloadFormat}
	out = binary.AppendUvarint(out, uint64(len(counts)))
	var b bytes.Buffer
	w, err := stdflate.NewWriter(&b, stdflate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	return append(out, b.Bytes()...)
}

// The Mandelbrot payload is standard deflate both ways: results written by the standard
// library's encoder (older nodes, stored entries) decode to the same counts, and a payload
// written now inflates with the standard library to the same delta stream.
func TestMandelPayloadStandardDeflate(t *testing.T) {
	p := MandelParams{CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, Width: 512, Height: 288, MaxIter: 2000}
	counts := make([]uint32, 16*p.Width)
	if err := MandelRows(p, 130, 146, counts); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMandelPayload(stdMandelPayload(t, counts), len(counts), 2000)
	if err != nil {
		t.Fatalf("decode a standard-library payload: %v", err)
	}
	if !slices.Equal(got, counts) {
		t.Fatal("a standard-library payload decodes to other counts")
	}

	ours := EncodeMandelPayload(counts)
	std := stdMandelPayload(t, counts)
	hdr := 1 + binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(counts)))
	if !bytes.Equal(ours[:hdr], std[:hdr]) {
		t.Fatalf("headers differ: %x vs %x", ours[:hdr], std[:hdr])
	}
	a, err := io.ReadAll(stdflate.NewReader(bytes.NewReader(ours[hdr:])))
	if err != nil {
		t.Fatalf("the standard library cannot inflate a payload: %v", err)
	}
	b, err := io.ReadAll(stdflate.NewReader(bytes.NewReader(std[hdr:])))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the two encoders deflate different delta streams")
	}
}

// TestDecodeCountsRuns: counts decode to themselves whether their deltas take one byte or more,
// from every starting count, and a count out of range is refused with its own index.
func TestDecodeCountsRuns(t *testing.T) {
	var counts []uint32
	c := int64(500)
	for i := range 3000 {
		switch {
		case i%97 == 0:
			c = int64(i*7) % 2001 // a long jump: a delta of two bytes or more
		case i%5 == 0:
			c += int64(i%3) - 1
		default:
			c += int64(i%61) - 30 // one byte: |delta| < 64
		}
		c = min(max(c, 0), 2000)
		counts = append(counts, uint32(c))
	}
	for cut := range 9 {
		want := counts[cut:]
		got, err := DecodeMandelPayload(EncodeMandelPayload(want), len(want), 2000)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("from count %d: %v", cut, err)
		}
	}
	run := []uint32{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25}
	for bad := 8; bad < 16; bad++ {
		_, err := DecodeMandelPayload(EncodeMandelPayload(run), len(run), uint32(run[bad])-1)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("count %d =", bad)) {
			t.Fatalf("max_iter below count %d: %v", bad, err)
		}
	}
}

// TestDecodeMandelPayloadAllocatesWhatItInflates: a payload of a few bytes that names the
// counts of the largest image (a result read from disk or the log for a range of every row) is
// refused without allocating room for them: DecodeMandelPayload made the gigabyte of counts
// before reading the header, and the inflater reserved twice the claimed count in bytes before
// reading the stream.
func TestDecodeMandelPayloadAllocatesWhatItInflates(t *testing.T) {
	const want = MaxMandelSide * MaxMandelSide
	short := EncodeMandelPayload([]uint32{1, 2, 3})
	claims := binary.AppendUvarint([]byte{payloadFormat}, want) // the count of every pixel…
	claims = append(claims, short[2:]...)                       // …and the deflated deltas of three
	for name, p := range map[string][]byte{
		"header only":      {payloadFormat},
		"wrong count":      short,
		"claims the image": claims,
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := DecodeMandelPayload(p, want, 100)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%s: decoded", name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
			t.Errorf("%s: %d MiB allocated to refuse a payload of %d bytes (%v)", name, n>>20, len(p), err)
		}
	}
}
