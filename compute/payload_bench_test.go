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

// mandelBenchChunk is one 64-row chunk of a 4096-pixel-wide view near the set's edge.
func mandelBenchChunk(b *testing.B) (MandelParams, []uint32) {
	p := MandelParams{CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, Width: 4096, Height: 2304, MaxIter: 2000}
	counts := make([]uint32, 64*p.Width)
	if err := MandelRows(p, 1000, 1064, counts); err != nil {
		b.Fatal(err)
	}
	return p, counts
}

// BenchmarkEncodeMandelPayload encodes one 64-row chunk: what the compute child does for every
// Mandelbrot result, inside its CPU budget.
func BenchmarkEncodeMandelPayload(b *testing.B) {
	_, counts := mandelBenchChunk(b)
	b.SetBytes(int64(len(counts) * 4))
	b.ReportAllocs()
	for b.Loop() {
		EncodeMandelPayload(counts)
	}
}

// BenchmarkChunkLeavesMandel decodes and hashes one 64-row chunk into its row leaves: what every
// replica does for every audited Mandelbrot result it applies.
func BenchmarkChunkLeavesMandel(b *testing.B) {
	p, counts := mandelBenchChunk(b)
	payload := EncodeMandelPayload(counts)
	spec := JobSpec{Kind: KindMandelbrot, Mandel: &p}
	b.SetBytes(int64(len(counts) * 4))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ChunkLeaves(spec, Range{Start: 1000, End: 1064}, payload); err != nil {
			b.Fatal(err)
		}
	}
}
