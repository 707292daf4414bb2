package child

import (
	"context"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// parts is a result's parts in order: Done first, then Also.
func resultParts(res Result) []Part {
	return append([]Part{{Done: res.Done, Payload: res.Payload}}, res.Also...)
}

// A task of a job with chunk_units comes back cut at the job's chunks, each part's payload
// exactly what a task of that chunk alone returns (π: its commitment blocks' hits; Mandelbrot:
// its rows), and a task is cut to at most MaxLeaseChunks chunks (plus the end of the first).
func TestChunkUnitsCutResults(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	const cu = 1 << 16
	pi := piSpec(1000*cu, 9)
	pi.ChunkUnits = cu
	for i, rg := range []compute.Range{
		{Start: 0, End: 5 * cu},                                  // whole chunks
		{Start: 3*cu + 100, End: 9*cu + 7},                       // starts and ends inside chunks
		{Start: audit.PiBlock - 2*cu, End: audit.PiBlock + 3*cu}, // across a commitment block
		{Start: 7 * cu, End: 7*cu + 5},                           // a piece of one chunk
	} {
		res, err := r.Run(context.Background(), Chunk{ID: uint64(i + 1), Spec: pi, Range: rg}, nil)
		if err != nil {
			t.Fatal(err)
		}
		at := rg.Start
		for _, p := range resultParts(res) {
			want := compute.Range{Start: at, End: min((at/cu+1)*cu, rg.End)}
			if p.Done != want {
				t.Fatalf("π %s: part %s, want %s", rg, p.Done, want)
			}
			blocks, _, err := compute.DecodePiBlocks(p.Payload, p.Done)
			if err != nil {
				t.Fatal(err)
			}
			if ref, _ := compute.PiBlocksHits(9, p.Done); !slices.Equal(blocks, ref) {
				t.Fatalf("π part %s: block hits %v, want %v", p.Done, blocks, ref)
			}
			at = p.Done.End
		}
		if at != rg.End {
			t.Fatalf("π %s: parts end at %d", rg, at)
		}
	}
	// More chunks than a task takes: the first MaxLeaseChunks whole ones after the first.
	res, err := r.Run(context.Background(), Chunk{ID: 9, Spec: pi, Range: compute.Range{Start: 10, End: (compute.MaxLeaseChunks + 40) * cu}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ps := resultParts(res); len(ps) != compute.MaxLeaseChunks || ps[len(ps)-1].Done.End != compute.MaxLeaseChunks*cu {
		t.Fatalf("long task: %d parts ending at %d, want %d ending at %d", len(ps), ps[len(ps)-1].Done.End, compute.MaxLeaseChunks, compute.MaxLeaseChunks*cu)
	}

	mb := mandelSpec(97, 60, 300, -0.743643887, 0.131825904, 0.01)
	mb.ChunkUnits = 7
	rg := compute.Range{Start: 5, End: 60}
	res, err = r.Run(context.Background(), Chunk{ID: 10, Spec: mb, Range: rg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := rg.Start
	for _, p := range resultParts(res) {
		if want := (compute.Range{Start: at, End: min((at/7+1)*7, rg.End)}); p.Done != want {
			t.Fatalf("Mandelbrot: part %s, want %s", p.Done, want)
		}
		if !slices.Equal(mandelGot(t, mb, Result{Done: p.Done, Payload: p.Payload}), mandelWant(t, mb, p.Done)) {
			t.Fatalf("Mandelbrot rows %s differ from MandelRows", p.Done)
		}
		at = p.Done.End
	}
	if at != rg.End {
		t.Fatalf("Mandelbrot: parts end at %d", at)
	}
}
