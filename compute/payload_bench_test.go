package compute

import "testing"

// BenchmarkDecodeMandelPayload decodes one 64-row chunk of a 4096-pixel-wide view near the
// set's edge: what every replica does for every Mandelbrot result it applies.
func BenchmarkDecodeMandelPayload(b *testing.B) {
	p := MandelParams{CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, Width: 4096, Height: 2304, MaxIter: 2000}
	counts := make([]uint32, 64*p.Width)
	if err := MandelRows(p, 1000, 1064, counts); err != nil {
		b.Fatal(err)
	}
	payload := EncodeMandelPayload(counts)
	b.SetBytes(int64(len(counts) * 4))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMandelPayload(payload, len(counts), 2000); err != nil {
			b.Fatal(err)
		}
	}
}
