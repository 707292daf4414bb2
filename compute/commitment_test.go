package compute

import (
	"bytes"
	"encoding/binary"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// testMandel is a small Mandelbrot job and the counts of its rows r.
func testMandel(t *testing.T, r Range) (JobSpec, []uint32) {
	t.Helper()
	p := &MandelParams{Width: 24, Height: 16, CenterX: -0.5, Span: 3, MaxIter: 200}
	counts := make([]uint32, int(r.Len())*p.Width)
	if _, err := MandelPixels(*p, int(r.Start)*p.Width, int(r.End)*p.Width, counts, 1, nil); err != nil {
		t.Fatal(err)
	}
	return JobSpec{Kind: KindMandelbrot, Mandel: p}, counts
}

// TestRootsFromCountsMatchCommitment: the roots the compute child computes from the counts and
// hits it has in hand are the payloads' commitments, which the coordinator checks.
func TestRootsFromCountsMatchCommitment(t *testing.T) {
	r := Range{3, 11}
	spec, counts := testMandel(t, r)
	payload := EncodeMandelPayload(counts)
	got, err := MandelRoot(r.Start, spec.Mandel.Width, counts)
	want, err2 := Commitment(spec, r, payload)
	if err != nil || err2 != nil || got != want {
		t.Fatalf("mandelbrot root %v, commitment %v (%v, %v)", got, want, err, err2)
	}
	if err := CheckCommitment(spec, r, payload, got); err != nil {
		t.Fatal(err)
	}
	if _, err := MandelRoot(r.Start, spec.Mandel.Width, counts[1:]); err == nil {
		t.Error("rows cut short: no error")
	}

	pr := Range{audit.PiBlock - 5, 3*audit.PiBlock + 9}
	pspec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 4 * audit.PiBlock, Seed: 7}}
	bh, err := PiBlocksHits(7, pr)
	if err != nil {
		t.Fatal(err)
	}
	gotPi, err := PiRoot(pr, bh)
	wantPi, err2 := Commitment(pspec, pr, EncodePiBlocksPayload(bh))
	if err != nil || err2 != nil || gotPi != wantPi {
		t.Fatalf("pi root %v, commitment %v (%v, %v)", gotPi, wantPi, err, err2)
	}
	if _, err := PiRoot(pr, bh[1:]); err == nil {
		t.Error("a block's hits missing: no error")
	}
}

// TestCheckResultsRefusesWhatTheLogMustNotHold: the coordinator's check refuses a payload that
// differs from its commitment (a row changed after committing) and one that does not decode;
// MergeRefused gives the outcome by the index of every item.
func TestCheckResultsRefusesWhatTheLogMustNotHold(t *testing.T) {
	r := Range{0, 8}
	spec, counts := testMandel(t, r)
	root, err := MandelRoot(0, spec.Mandel.Width, counts)
	if err != nil {
		t.Fatal(err)
	}
	good := ChunkResult{Chunk: Chunk{Job: "m", Range: r}, Node: "a", Payload: EncodeMandelPayload(counts), Root: root}
	cheat := good
	changed := append([]uint32(nil), counts...)
	changed[30]++ // a cheater committed to the right rows and sent others
	cheat.Payload = EncodeMandelPayload(changed)
	broken := good
	broken.Payload = good.Payload[:len(good.Payload)-3]
	other := good
	other.Job = "unknown" // left to the job state
	specs := func(job string) (JobSpec, bool) { return spec, job == "m" }
	ok, idx, refused := CheckResults([]ChunkResult{cheat, good, broken, other}, specs)
	if len(ok) != 2 || idx[0] != 1 || idx[1] != 3 || len(refused) != 2 || refused[0].Index != 0 || refused[1].Index != 2 {
		t.Fatalf("passed %v, refused %+v", idx, refused)
	}
	if !strings.Contains(refused[0].Reason, "does not match") || !strings.Contains(refused[1].Reason, "commitment:") {
		t.Fatalf("reasons %+v", refused)
	}
	out := MergeRefused(&ResultsOutcome{Accepted: 1, Rejected: []Rejection{{Index: 1, Job: "unknown", Reason: "unknown job"}}}, idx, refused)
	if out.Accepted != 1 || len(out.Rejected) != 3 || out.Rejected[0].Index != 0 || out.Rejected[1].Index != 2 || out.Rejected[2].Index != 3 {
		t.Fatalf("merged %+v", out)
	}
}

// TestCheckResultsRefusesRangesNoWorkerComputes: the coordinator checks a result's commitment
// before the job state checks its range, and a worker may hand in a result of an earlier term
// for any range nobody holds. A π range in the last block of the uint64 range ran audit.PiBlocks
// away (TestPiBlocksAtTheTopOfTheRange); a range past the job's end, or of more Mandelbrot
// counts than a result holds (a few kilobytes of deflated zeros claiming a gigabyte of counts),
// had its payload inflated and hashed in full. Each is refused before it is decoded; a result
// as the compute child makes it passes.
func TestCheckResultsRefusesRangesNoWorkerComputes(t *testing.T) {
	pspec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 4 * audit.PiBlock, Seed: 7}}
	top := Range{math.MaxUint64 - audit.PiBlock - 5, math.MaxUint64}
	piRes := func(r Range) ChunkResult {
		bh := make([]uint64, audit.PiLeafCount(r.Start, r.End)) // no hits: a consistent commitment
		root, err := PiRoot(r, bh)
		if err != nil {
			t.Fatal(err)
		}
		return ChunkResult{Chunk: Chunk{Job: "p", Range: r}, Node: "evil", Payload: EncodePiBlocksPayload(bh), Root: root}
	}
	wide := &MandelParams{Width: MaxMandelSide, Height: 64, CenterX: -0.5, Span: 3, MaxIter: 200}
	mspec := JobSpec{Kind: KindMandelbrot, Mandel: wide}
	rows := uint64(wire.MaxResultCounts / wide.Width)
	mandelRes := func(r Range) ChunkResult {
		counts := make([]uint32, int(r.Len())*wide.Width)
		root, err := MandelRoot(r.Start, wide.Width, counts)
		if err != nil {
			t.Fatal(err)
		}
		return ChunkResult{Chunk: Chunk{Job: "m", Range: r}, Node: "evil", Payload: EncodeMandelPayload(counts), Root: root}
	}
	items := []ChunkResult{
		piRes(top), // 0: refused
		piRes(Range{3 * audit.PiBlock, 5 * audit.PiBlock}), // 1: past the job's end: refused
		piRes(Range{audit.PiBlock - 5, 2 * audit.PiBlock}), // 2: inside: passes
		mandelRes(Range{60, 60 + rows}),                    // 3: past the image's 64 rows: refused
		mandelRes(Range{0, rows + 1}),                      // 4: more counts than a result: refused
		mandelRes(Range{8, 8 + rows}),                      // 5: a whole result: passes
	}
	specs := func(job string) (JobSpec, bool) {
		if job == "p" {
			return pspec, true
		}
		return mspec, true
	}
	done := make(chan struct{})
	var ok []ChunkResult
	var idx []int
	var refused []Rejection
	go func() {
		defer close(done)
		ok, idx, refused = CheckResults(items, specs)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a deadline, not a synchronisation: it takes milliseconds
		t.Fatal("CheckResults still running after 30 s")
	}
	if len(ok) != 2 || idx[0] != 2 || idx[1] != 5 || len(refused) != 4 {
		t.Fatalf("passed %v, refused %+v", idx, refused)
	}
	for _, rj := range refused {
		if !strings.Contains(rj.Reason, "outside the job") && !strings.Contains(rj.Reason, "counts of a result") {
			t.Errorf("result %d refused for %q", rj.Index, rj.Reason)
		}
	}
}

// TestPiPayloadCheckedBeforeItsBlocks: a π payload of a few bytes that names the largest range
// (MaxLeaves blocks) is refused before the range's blocks are cut. Each such result cost the
// coordinator's check two cuts of 65,536 blocks and their hits, 2.5 MB and 200,000 steps for 10
// bytes of input, and a worker's exchange carries tens of thousands of results.
func TestPiPayloadCheckedBeforeItsBlocks(t *testing.T) {
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: MaxPiSamples, Seed: 1}}
	r := Range{0, audit.MaxLeaves * audit.PiBlock}
	short := binary.AppendUvarint(binary.AppendUvarint([]byte{piPayloadBlocks}, 0), audit.MaxLeaves) // no hits follow
	const runs = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if err := CheckCommitment(spec, r, short, audit.Hash{}); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("a payload without its hits: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 64<<10 {
		t.Fatalf("%d KiB allocated per check of a %d-byte payload", per>>10, len(short))
	}
	// A whole payload of the range still decodes.
	full := EncodePiBlocksPayload(make([]uint64, audit.MaxLeaves))
	if bh, total, err := DecodePiBlocks(full, r); err != nil || len(bh) != audit.MaxLeaves || total != 0 {
		t.Fatalf("%d blocks, %d hits: %v", len(bh), total, err)
	}
}

// TestResultLeavesTrustsTheCheckedLog: applying an audited Mandelbrot result decodes only its
// header (the coordinator inflated and hashed it); a payload of the wrong size is still refused,
// and an audit recomputes the leaves from the stored payload.
func TestResultLeavesTrustsTheCheckedLog(t *testing.T) {
	r := Range{2, 6}
	spec, counts := testMandel(t, r)
	payload := EncodeMandelPayload(counts)
	if n, hits, err := ResultLeaves(spec, r, payload); err != nil || n != 4 || hits != 0 {
		t.Fatalf("%d leaves, %d hits: %v", n, hits, err)
	}
	for name, p := range map[string][]byte{
		"empty":        nil,
		"wrong count":  EncodeMandelPayload(counts[:len(counts)-spec.Mandel.Width]),
		"wrong format": append([]byte{9}, payload[1:]...),
	} {
		if _, _, err := ResultLeaves(spec, r, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	pr := Range{0, 2*audit.PiBlock + 1}
	pspec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 3 * audit.PiBlock, Seed: 5}}
	bh, _ := PiBlocksHits(5, pr)
	var total uint64
	for _, h := range bh {
		total += h
	}
	if n, hits, err := ResultLeaves(pspec, pr, EncodePiBlocksPayload(bh)); err != nil || n != 3 || hits != total {
		t.Fatalf("pi: %d leaves, %d hits (want %d): %v", n, hits, total, err)
	}
	if _, _, err := ResultLeaves(pspec, pr, EncodePiPayload(total)); err == nil {
		t.Error("pi payload without blocks accepted")
	}
}

// FuzzResultLeaves: any payload gives an error or a leaf count, never a panic; a payload that
// passes the coordinator's check gives what its leaves say.
func FuzzResultLeaves(f *testing.F) {
	f.Add(EncodeMandelPayload([]uint32{1, 2, 3, 4, 5, 6}), true, uint64(1), uint64(3))
	f.Add(EncodePiBlocksPayload([]uint64{5, 7}), false, uint64(audit.PiBlock-3), uint64(audit.PiBlock+4))
	f.Add([]byte{1, 0x80}, true, uint64(0), uint64(1))
	f.Add([]byte{2, 0x87, 0x00, 0x02, 0x03, 0x04}, false, uint64(audit.PiBlock-3), uint64(audit.PiBlock+4)) // overlong total
	mspec := JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 2, Height: 1 << 20, Span: 3, MaxIter: 50}}
	pspec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1 << 40, Seed: 3}}
	f.Fuzz(func(t *testing.T, payload []byte, mandel bool, start, end uint64) {
		spec := pspec
		if mandel {
			spec = mspec
			start, end = start%(1<<20), end%(1<<20)
		} else {
			start, end = start%(1<<40), end%(1<<40)
		}
		r := Range{start, end}
		n, hits, err := ResultLeaves(spec, r, payload)
		leaves, want, err2 := ChunkLeaves(spec, r, payload)
		if err2 == nil && CheckCommitment(spec, r, payload, audit.Root(leaves)) == nil {
			if err != nil || n != len(leaves) || hits != want {
				t.Fatalf("checked payload: %d leaves, %d hits, %v; its leaves %d, %d", n, hits, err, len(leaves), want)
			}
			// The check reads strictly: a π payload it passes is the encoding of what it holds.
			if !mandel {
				bh, _, _ := DecodePiBlocks(payload, r)
				if again := EncodePiBlocksPayload(bh); !bytes.Equal(again, payload) {
					t.Fatalf("checked payload % x is not its encoding % x", payload, again)
				}
			}
		}
	})
}

// TestChunkLeavesMandelRows: the leaves of a Mandelbrot payload are the leaves of its decoded
// rows (audit.MandelLeaf), whatever width the pooled scratch row last held; a count above
// max_iter in the last row, a payload cut short and trailing bytes are refused.
func TestChunkLeavesMandelRows(t *testing.T) {
	narrow, nc := testMandel(t, Range{3, 11})
	wideP := &MandelParams{Width: 700, Height: 9, CenterX: -0.7, Span: 3, MaxIter: 300}
	wc := make([]uint32, 4*wideP.Width)
	if _, err := MandelPixels(*wideP, 2*wideP.Width, 6*wideP.Width, wc, 1, nil); err != nil {
		t.Fatal(err)
	}
	wide := JobSpec{Kind: KindMandelbrot, Mandel: wideP}
	for round := range 2 {
		for _, c := range []struct {
			spec   JobSpec
			r      Range
			counts []uint32
		}{{wide, Range{2, 6}, wc}, {narrow, Range{3, 11}, nc}} {
			w := c.spec.Mandel.Width
			leaves, _, err := ChunkLeaves(c.spec, c.r, EncodeMandelPayload(c.counts))
			if err != nil || len(leaves) != int(c.r.Len()) {
				t.Fatalf("round %d width %d: %d leaves: %v", round, w, len(leaves), err)
			}
			for i, l := range leaves {
				if want := audit.MandelLeaf(c.r.Start+uint64(i), c.counts[i*w:(i+1)*w]); l != want {
					t.Fatalf("round %d width %d: row %d leaf %v, want %v", round, w, i, l, want)
				}
			}
		}
	}
	bad := append([]uint32(nil), wc...)
	bad[len(bad)-1] = uint32(wideP.MaxIter) + 1
	// one count more than its header says: the header's uvarint has the same length
	long := EncodeMandelPayload(append(append([]uint32(nil), wc...), 5))
	long = append(append([]byte{long[0]}, binary.AppendUvarint(nil, uint64(len(wc)))...), long[1+len(binary.AppendUvarint(nil, uint64(len(wc)+1))):]...)
	for name, b := range map[string][]byte{
		"count above max_iter": EncodeMandelPayload(bad),
		"cut short":            EncodeMandelPayload(wc[:len(wc)-1]),
		"trailing counts":      long,
	} {
		if _, _, err := ChunkLeaves(wide, Range{2, 6}, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
