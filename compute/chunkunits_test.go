package compute

import (
	"strings"
	"testing"
	"time"
)

func TestChunkUnitsValidate(t *testing.T) {
	pi := func(samples, cu uint64) JobSpec {
		return JobSpec{Kind: KindPi, Pi: &PiParams{Samples: samples, Seed: 1}, ChunkUnits: cu}
	}
	mb := func(height int, cu uint64) JobSpec {
		return JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 8, Height: height, Span: 3, MaxIter: 10}, ChunkUnits: cu}
	}
	for _, ok := range []JobSpec{pi(1e9, 0), pi(1e9, MinPiChunkUnits), pi(1e12, maxPiChunk), pi(MinPiChunkUnits, MinPiChunkUnits), pi(MaxJobChunks*MinPiChunkUnits, MinPiChunkUnits), mb(100, 1), mb(100, 100)} {
		if err := ok.Validate(); err != nil {
			t.Errorf("chunk_units %d: %v", ok.ChunkUnits, err)
		}
	}
	for _, c := range []struct {
		spec JobSpec
		want string
	}{
		{pi(1e9, MinPiChunkUnits-1), "outside"},
		{pi(1e15, maxPiChunk+1), "outside"},
		{pi(MinPiChunkUnits, MinPiChunkUnits+1), "more than the job"},
		{mb(100, 101), "more than the job"},
		{pi(1e15, MinPiChunkUnits), "at most 100000"},
		{pi(MaxJobChunks*MinPiChunkUnits+1, MinPiChunkUnits), "makes 100001 chunks"},
		{JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 100, Reduce: ReduceSum}, ChunkUnits: 10}, "pi and mandelbrot only"},
	} {
		if err := c.spec.Validate(); err == nil || !strings.HasPrefix(err.Error(), "chunk_units: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("chunk_units %d of a %s job: %v, want chunk_units: …%s", c.spec.ChunkUnits, c.spec.Kind, err, c.want)
		}
	}
}

// A job with chunk_units is leased in runs of whole chunks: every lease starts and ends on a
// chunk boundary (but the job's end), the probe and the rate-sized leases hold as many chunks
// as their size allows, at most MaxLeaseChunks; leases after a prefix end on a boundary again.
func TestChunkUnitsLeaseWholeChunks(t *testing.T) {
	const cu = 1 << 16
	total := uint64(3000*cu + 1234)
	c := newClock()
	s := NewScheduler(SchedulerConfig{ChunkTarget: 100 * time.Millisecond})
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: total, Seed: 1}, ChunkUnits: cu}
	if err := s.AddJob("j", spec, []Range{{0, total}}, false); err != nil {
		t.Fatal(err)
	}
	check := func(l Lease) {
		t.Helper()
		if l.Range.End != total && l.Range.End%cu != 0 {
			t.Fatalf("lease %s does not end on a chunk boundary", l.Range)
		}
		if n := (l.Range.End-1)/cu - l.Range.Start/cu + 1; n > MaxLeaseChunks {
			t.Fatalf("lease %s spans %d chunks, at most %d", l.Range, n, MaxLeaseChunks)
		}
	}
	p := mustLease(t, s, "a", c.now())
	check(p)
	if !p.Probe || p.Range != (Range{0, 1 << 20}) {
		t.Fatalf("probe %+v, want the 16 chunks of 2²⁰ samples", p)
	}
	complete(t, s, c, p, 1e9) // 1e9 samples/s: 100 ms is 1525 chunks, capped
	l := mustLease(t, s, "a", c.now())
	check(l)
	if l.Range.Len() != MaxLeaseChunks*cu {
		t.Fatalf("lease %s: want %d chunks (the cap)", l.Range, MaxLeaseChunks)
	}
	// A prefix that ends inside a chunk: the rest goes back, and the next lease from there ends
	// on a boundary.
	if _, _, ok := s.CompletePrefix(l.ID, Range{l.Range.Start, l.Range.Start + 5*cu + 77}, c.advance(time.Millisecond)); !ok {
		t.Fatal("prefix: unknown lease")
	}
	var got []Range
	for {
		l, ok := s.Lease("a", c.now())
		if !ok {
			break
		}
		check(l)
		got = append(got, l.Range)
		complete(t, s, c, l, 1e9)
	}
	if got[0].Start != (1<<20)+5*cu+77 || got[len(got)-1].End != total {
		t.Fatalf("leases after the prefix: first %s, last %s", got[0], got[len(got)-1])
	}
}
