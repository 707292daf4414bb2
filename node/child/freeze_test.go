package child

import (
	"context"
	"runtime"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// TestLogParts checks how a frozen child's log becomes results: blocks finished out of order
// give several ranges, duplicates (a block computed again after a --cpus change), overlaps,
// records outside the task and impossible hits are skipped, π hits land in their commitment
// blocks, and Mandelbrot keeps whole rows only.
func TestLogParts(t *testing.T) {
	const seed = 9
	pb := uint64(audit.PiBlock)
	rec := func(a, b uint64) shmRec { return shmRec{a, b, compute.PiHits(seed, a, b)} }
	task := Chunk{ID: 1, Spec: piSpec(1<<40, seed), Range: compute.Range{Start: pb - 100, End: 3 * pb}}
	recs := []shmRec{
		rec(pb+1000, pb+3000), // ahead, after a hole at [pb, pb+1000)
		rec(pb-100, pb),       // the first leaf's piece: the prefix
		rec(pb+3000, 2*pb),
		rec(pb+3000, 2*pb),                  // a duplicate
		rec(pb+2000, pb+4000),               // overlaps
		{2*pb + 10, 2*pb + 20, 11},          // more hits than samples
		rec(3*pb, 3*pb+10),                  // outside the task
		{pb + 4000, pb + 5000, 0},           // inside a range already taken
		rec(2*pb+100, 2*pb+100+1<<20),       // a block alone
		{2*pb + 1<<21, 2*pb + 1<<21, 0},     // empty
		{2*pb - 5, 2*pb + 5, 3},             // spans two commitment blocks
		rec(2*pb+100+1<<20, 2*pb+200+1<<20), // joins the one before
	}
	parts := logParts(task, recs, nil)
	want := []compute.Range{{Start: pb - 100, End: pb}, {Start: pb + 1000, End: 2 * pb}, {Start: 2*pb + 100, End: 2*pb + 200 + 1<<20}}
	if len(parts) != len(want) {
		t.Fatalf("parts %v, want %v", partRanges(parts), want)
	}
	for i, p := range parts {
		if p.Done != want[i] {
			t.Fatalf("part %d: %s, want %s", i, p.Done, want[i])
		}
		blocks, _, err := compute.DecodePiBlocks(p.Payload, p.Done)
		if err != nil {
			t.Fatal(err)
		}
		if ref, _ := compute.PiBlocksHits(seed, p.Done); !slices.Equal(blocks, ref) {
			t.Fatalf("part %s: block hits %v, want %v", p.Done, blocks, ref)
		}
	}

	// Mandelbrot: 10 pixels a row; rows 2–4 of a task of rows 2–9.
	spec := mandelSpec(10, 10, 50, -0.5, 0, 3)
	mt := Chunk{ID: 2, Spec: spec, Range: compute.Range{Start: 2, End: 9}}
	pix := make([]uint32, 70)
	ref := make([]uint32, 70)
	if err := compute.MandelRows(*spec.Mandel, 2, 9, ref); err != nil {
		t.Fatal(err)
	}
	m := func(a, b uint64) shmRec {
		copy(pix[a-20:b-20], ref[a-20:b-20])
		return shmRec{start: a, end: b}
	}
	mrecs := []shmRec{m(20, 35), m(35, 40), m(45, 61), m(61, 70), m(80, 90), {85, 95, 0}, {90, 200, 0}}
	parts = logParts(mt, mrecs, pix)
	wantRows := []compute.Range{{Start: 2, End: 4}, {Start: 5, End: 7}, {Start: 8, End: 9}}
	if got := partRanges(parts); !slices.Equal(got, wantRows) {
		t.Fatalf("rows %v, want %v", got, wantRows)
	}
	for _, p := range parts {
		counts, err := compute.DecodeMandelPayload(p.Payload, int(p.Done.Len())*10, 50)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(counts, ref[(p.Done.Start-2)*10:(p.Done.End-2)*10]) {
			t.Fatalf("rows %s differ from the reference", p.Done)
		}
	}
}

func partRanges(ps []Part) []compute.Range {
	out := make([]compute.Range, len(ps))
	for i, p := range ps {
		out[i] = p.Done
	}
	return out
}

// FuzzLogParts: whatever a log holds (it is written by another process), logParts returns
// ordered, disjoint ranges inside the task with payloads that decode and their commitments, and
// never panics.
func FuzzLogParts(f *testing.F) {
	f.Add(uint64(5), uint64(1<<22), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, true)
	f.Add(uint64(0), uint64(40), []byte{0, 10, 10, 20, 25, 40}, false)
	f.Fuzz(func(t *testing.T, start, n uint64, raw []byte, pi bool) {
		n = n%(1<<24) + 1
		start %= 1 << 40
		task := Chunk{Spec: piSpec(1<<41, 3), Range: compute.Range{Start: start, End: start + n}}
		var pix []uint32
		if !pi {
			spec := mandelSpec(7, 1000, 30, 0, 0, 2)
			task = Chunk{Spec: spec, Range: compute.Range{Start: start % 1000, End: min(start%1000+n, 1000)}}
			pix = make([]uint32, 7000)
		}
		var recs []shmRec
		for i := 0; i+2 < len(raw); i += 3 {
			a := task.Range.Start*7 + uint64(raw[i])*uint64(raw[i+1]%9)
			if pi {
				a = start + uint64(raw[i])<<uint(raw[i+1]%24)
			}
			recs = append(recs, shmRec{a, a + uint64(raw[i+2])<<uint(raw[i+1]%5), uint64(raw[i+2])})
		}
		prev := task.Range.Start
		for _, p := range logParts(task, recs, pix) {
			if p.Done.Start < prev || p.Done.End <= p.Done.Start || p.Done.End > task.Range.End {
				t.Fatalf("part %s after %d in %s", p.Done, prev, task.Range)
			}
			prev = p.Done.End
			var err error
			if pi {
				_, _, err = compute.DecodePiBlocks(p.Payload, p.Done)
			} else {
				_, err = compute.DecodeMandelPayload(p.Payload, int(p.Done.Len())*7, 30)
			}
			if err != nil {
				t.Fatalf("part %s: %v", p.Done, err)
			}
			if root, err := compute.Commitment(task.Spec, p.Done, p.Payload); err != nil || p.Root != root {
				t.Fatalf("part %s: root %v, its payload's %v (%v)", p.Done, p.Root, root, err)
			}
		}
	})
}

// TestPauseFreezeResume pauses running tasks the way the owner policy does and checks that
// nothing finished is lost or wrong: every range the pause hands in (the prefix and the blocks
// finished ahead of it) is exact, covers every whole block (π) or row (Mandelbrot) the child
// had logged, and after Resume computing the gaps gives the whole. Where the child can be
// frozen (Linux) the pause replaces it: the next Run starts another.
func TestPauseFreezeResume(t *testing.T) {
	var logged []shmRec
	var froze bool
	freezeLogged = func(_ Chunk, recs []shmRec) { logged, froze = slices.Clone(recs), true }
	t.Cleanup(func() { freezeLogged = nil })
	r := startRunner(t, "child", 2, 0)
	piCase := pauseCase{"pi", piSpec(1<<45, 5), compute.Range{Start: 77, End: 77 + 1<<40}, 0}
	mandelCase := pauseCase{"mandel", mandelSpec(600, 600, 20000, -0.2, 0, 0.4), compute.Range{Start: 0, End: 600}, 0}
	for i, c := range []pauseCase{piCase, mandelCase} {
		logged, froze = nil, false
		h0, _ := r.Hello()
		_, res := pauseOnce(t, r, uint64(i+1), c)
		if err := checkPrefix(c, res); err != nil {
			t.Fatal(err)
		}
		kept := compute.NewRangeSet(res.Done)
		end := res.Done.End
		for _, p := range res.Also {
			if err := checkPart(c, p); err != nil {
				t.Fatal(err)
			}
			kept.Add(p.Done)
			end = p.Done.End
		}
		h1, _ := r.Hello()
		t.Logf("%s: pause kept %v (child %d → %d, %d blocks logged)", c.name, kept.Ranges(), h0.PID, h1.PID, len(logged))
		if runtime.GOOS == "linux" {
			if !froze {
				t.Fatalf("%s: the pause did not freeze the child", c.name)
			}
			if lost := lostUnits(c, logged, kept); lost != 0 {
				t.Fatalf("%s: %d finished units logged but not handed in", c.name, lost)
			}
		}
		// Resume and compute the gaps: prefix + parts + gaps = a whole computation.
		r.Resume()
		gaps := kept.Complement(compute.Range{Start: c.rng.Start, End: end})
		for _, g := range gaps.Ranges() {
			res, err := r.Run(context.Background(), Chunk{ID: 99, Spec: c.spec, Range: g}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Done != g {
				t.Fatalf("%s: gap %s: done %s", c.name, g, res.Done)
			}
			if err := checkPart(c, Part{res.Done, res.Payload, res.Root}); err != nil {
				t.Fatal(err)
			}
			kept.Add(g)
		}
		if rs := kept.Ranges(); end > c.rng.Start && (len(rs) != 1 || rs[0] != (compute.Range{Start: c.rng.Start, End: end})) {
			t.Fatalf("%s: after the gaps %v", c.name, rs)
		}
	}
}

// checkPart verifies one finished range of c against the reference.
func checkPart(c pauseCase, p Part) error {
	cc := c
	cc.rng = compute.Range{Start: p.Done.Start, End: p.Done.End + 1} // checkPrefix wants a proper prefix
	return checkPrefix(cc, Result{Done: p.Done, Payload: p.Payload, Root: p.Root})
}

// lostUnits counts the units (π samples, Mandelbrot whole rows) the logged blocks finished that
// kept does not hold.
func lostUnits(c pauseCase, recs []shmRec, kept compute.RangeSet) uint64 {
	fin := compute.NewRangeSet()
	for _, r := range recs {
		if r.end > r.start {
			fin.Add(compute.Range{Start: r.start, End: r.end})
		}
	}
	if c.spec.Kind == compute.KindMandelbrot {
		w := uint64(c.spec.Mandel.Width)
		rows := compute.NewRangeSet()
		for _, r := range fin.Ranges() {
			if a, b := (r.Start+w-1)/w, r.End/w; a < b {
				rows.Add(compute.Range{Start: a, End: b})
			}
		}
		fin = rows
	}
	for _, r := range kept.Ranges() {
		fin.Remove(r)
	}
	return fin.Units()
}
