package compute

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
)

// --- independent references, written plainly from docs/design.md §4 with math/big ---

var two64 = new(big.Int).Lsh(big.NewInt(1), 64)

// bigWrap reduces v modulo 2⁶⁴ (the "wrapping uint64 arithmetic" of the definition).
func bigWrap(v *big.Int) *big.Int { return v.Mod(v, two64) }

// refPiHit decides sample i of seed S with arbitrary-precision integers.
func refPiHit(seed, i uint64) bool {
	z := new(big.Int).SetUint64(seed)
	k := new(big.Int).SetUint64(i)
	k.Add(k, big.NewInt(1))
	k.Mul(k, new(big.Int).SetUint64(0x9e3779b97f4a7c15))
	z = bigWrap(z.Add(z, k))
	xorShift := func(z *big.Int, s uint) *big.Int { return new(big.Int).Xor(z, new(big.Int).Rsh(z, s)) }
	z = bigWrap(new(big.Int).Mul(xorShift(z, 30), new(big.Int).SetUint64(0xbf58476d1ce4e5b9)))
	z = bigWrap(new(big.Int).Mul(xorShift(z, 27), new(big.Int).SetUint64(0x94d049bb133111eb)))
	r := xorShift(z, 31)
	lo := new(big.Int).And(r, big.NewInt(0xffffffff))
	hi := new(big.Int).Rsh(r, 32)
	x := new(big.Int).Rsh(lo, 1)
	y := new(big.Int).Rsh(hi, 1)
	s := new(big.Int).Add(new(big.Int).Mul(x, x), new(big.Int).Mul(y, y))
	return s.Cmp(new(big.Int).Lsh(big.NewInt(1), 62)) < 0
}

func refPiHits(seed, start, end uint64) uint64 {
	var h uint64
	for i := start; i < end; i++ {
		if refPiHit(seed, i) {
			h++
		}
	}
	return h
}

// refMandel computes one pixel with big.Float at 53-bit precision, round to nearest even:
// every operation is rounded on its own, exactly like unfused float64 (no value here comes
// near the subnormal range, where the two could differ).
func refMandel(p MandelParams, px, py int) uint32 {
	f := func(v float64) *big.Float { return new(big.Float).SetPrec(53).SetFloat64(v) }
	nf := func() *big.Float { return new(big.Float).SetPrec(53) }
	s := nf().Quo(f(p.Span), f(float64(p.Width)))
	halfW := nf().Quo(f(float64(p.Width)), f(2))
	halfH := nf().Quo(f(float64(p.Height)), f(2))
	cr := nf().Sub(f(float64(px)), halfW)
	cr.Add(cr, f(0.5))
	cr.Mul(cr, s)
	cr.Add(f(p.CenterX), cr)
	ci := nf().Sub(f(float64(py)), halfH)
	ci.Add(ci, f(0.5))
	ci.Mul(ci, s)
	ci.Sub(f(p.CenterY), ci)
	zr, zi := f(0), f(0)
	four := f(4)
	for n := 0; n < p.MaxIter; n++ {
		zr2 := nf().Mul(zr, zr)
		zi2 := nf().Mul(zi, zi)
		if nf().Add(zr2, zi2).Cmp(four) > 0 {
			return uint32(n)
		}
		t := nf().Mul(zr, zi)
		zi = nf().Add(nf().Add(t, t), ci)
		zr = nf().Add(nf().Sub(zr2, zi2), cr)
	}
	return uint32(p.MaxIter)
}

// testViews are the Mandelbrot references: views with long, short and boundary orbits, each
// checked pixel by pixel against the big-float definition and pinned by a checksum
// (goldenMandel) that a build for another architecture must reproduce. Together they change if
// any one multiply-add of the definition is fused (TestFusedVariantsCaught proves it for each):
//   - the deep view (1) has chaotic orbits thousands of iterations long, where a different
//     rounding in the zr or zi update changes a few counts;
//   - a rounding changes a short orbit's count only when it decides whether |z|² > 4, which no
//     view meets by chance. Views 3–8 are built for that (by a search over random c; any such c
//     will do). In views 3 and 4 the pixel c = (−1.4832686604802068, 1.3416087659363491) has
//     fl(cr²) + fl(ci²) = 4 + 2⁻⁵¹ exactly, a tie that rounds to 4 (no escape at n = 1, escape at
//     n = 2), while either square left unrounded gives 4 + 2⁻⁵⁰ (escape at n = 1). In views 5
//     and 6 the pixel c = (−1.6812975977320517, 0.8230126363371284) has |z₂|² within an ulp of 4,
//     on the side that each fused zr or zi update crosses. In view 7 the pixel (6, 3) has
//     cr = cx + fl(3·s) one ulp away from fma(3, s, cx), on the circle |c| = 2 so that the ulp
//     decides the escape at n = 1; in view 8 the pixel (3, 0) likewise in ci.
//   - The kernels have several copies of the loop (two interleaved pixels, the continuation of the
//     one left when its partner escapes, the odd last pixel, the vector lanes), and a fusion in
//     any one copy must show: views 3 and 5 have every pixel at c (a span far below an ulp of c),
//     so c is computed as a pair and as the odd last pixel; views 4 and 6 put c in column 1 with
//     column 0 at |c| > 2, which escapes at n = 1 and leaves c to the continuation.
var testViews = []MandelParams{
	{Width: 33, Height: 19, CenterX: -0.5, CenterY: 0, Span: 3, MaxIter: 200},
	{Width: 40, Height: 23, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.0002, MaxIter: 2000},
	{Width: 17, Height: 11, CenterX: 0.2501, CenterY: 0.0, Span: 1e-3, MaxIter: 5000},
	{Width: 3, Height: 1, CenterX: -1.4832686604802068, CenterY: 1.3416087659363491, Span: 3e-30, MaxIter: 100},
	{Width: 2, Height: 1, CenterX: -1.4832686604802068 - 2, CenterY: 1.3416087659363491, Span: 8, MaxIter: 100},
	{Width: 3, Height: 1, CenterX: -1.6812975977320517, CenterY: 0.8230126363371284, Span: 3e-30, MaxIter: 100},
	{Width: 2, Height: 1, CenterX: -1.6812975977320517 - 2, CenterY: 0.8230126363371284, Span: 8, MaxIter: 100},
	{Width: 7, Height: 7, CenterX: -1.1714213811328442, CenterY: 1.6246425884857156, Span: 0.011669045853335539, MaxIter: 100},
	{Width: 7, Height: 7, CenterX: -1.4681444557486465, CenterY: 1.354098702978371, Span: 0.009436219393703465, MaxIter: 100},
}

// --- known answers ---

func TestPiHitsMatchesBigIntReference(t *testing.T) {
	for _, seed := range []uint64{0, 1, 7, 0xdeadbeef, ^uint64(0)} {
		for _, r := range [][2]uint64{{0, 700}, {1_000_000_000_000, 1_000_000_000_300}, {^uint64(0) - 400, ^uint64(0) - 1}} {
			for _, k := range impls() {
				if got, want := k.pi(seed, r[0], r[1]), refPiHits(seed, r[0], r[1]); got != want {
					t.Errorf("%s: seed %d [%d,%d): hits %d, reference %d", k.name, seed, r[0], r[1], got, want)
				}
			}
		}
	}
}

func TestMandelMatchesBigFloatReference(t *testing.T) {
	for vi, p := range testViews {
		want := make([]uint32, p.Width*p.Height)
		for py := 0; py < p.Height; py++ {
			for px := 0; px < p.Width; px++ {
				want[py*p.Width+px] = refMandel(p, px, py)
			}
		}
		for _, k := range impls() {
			got := mandelWith(k, p)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s view %d pixel (%d,%d): %d, reference %d", k.name, vi, i%p.Width, i/p.Width, got[i], want[i])
				}
			}
		}
	}
}

// TestGoldenValues pins a few results so that a build for another architecture (arm64 under
// qemu-user, where Go may fuse multiply-adds) is checked against these amd64 numbers.
func TestGoldenValues(t *testing.T) {
	if got := PiHits(7, 0, 1_000_000); got != goldenPi7 {
		t.Errorf("PiHits(7, 0, 1e6) = %d, want %d", got, goldenPi7)
	}
	for vi, p := range testViews {
		out := make([]uint32, p.Width*p.Height)
		if err := MandelRows(p, 0, p.Height, out); err != nil {
			t.Fatal(err)
		}
		if got := fnv32(out); got != goldenMandel[vi] {
			t.Errorf("view %d checksum %#x, want %#x", vi, got, goldenMandel[vi])
		}
	}
}

const goldenPi7 uint64 = 785_144

// goldenMandel holds the FNV-1a checksums of testViews' counts, computed on amd64.
var goldenMandel = []uint32{0x653e92b7, 0xc18ebf03, 0xe0560d3c, 0x6eeb02f7, 0xded89066, 0xa893b2d6, 0x2f04cf77, 0x5d7073b7, 0x13f3f674}

func fnv32(v []uint32) uint32 {
	h := uint32(2166136261)
	for _, x := range v {
		for i := 0; i < 4; i++ {
			h ^= (x >> (8 * i)) & 0xff
			h *= 16777619
		}
	}
	return h
}

func mandelWith(k kernelImpl, p MandelParams) []uint32 {
	g := newMandelGeom(p)
	out := make([]uint32, p.Width*p.Height)
	for py := 0; py < p.Height; py++ {
		k.mandel(&g, py, 0, p.Width, out[py*p.Width:(py+1)*p.Width])
	}
	return out
}

// --- every path gives the same bits ---

func TestAllPathsSameBits(t *testing.T) {
	paths := impls()
	t.Logf("paths on this CPU: %v, in use: %s", names(paths), KernelPath())
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		seed := rng.Uint64()
		start := rng.Uint64()
		end := start + uint64(rng.IntN(5000))
		if end < start {
			continue
		}
		want := piPortable(seed, start, end)
		for _, k := range paths {
			if got := k.pi(seed, start, end); got != want {
				t.Fatalf("%s pi seed %#x [%d,%d): %d, portable %d", k.name, seed, start, end, got, want)
			}
		}
	}
	for _, p := range append(testViews, MandelParams{Width: 131, Height: 7, CenterX: -1.25, CenterY: 0.02, Span: 0.3, MaxIter: 1000}) {
		g := newMandelGeom(p)
		for range 50 {
			py := rng.IntN(p.Height)
			a := rng.IntN(p.Width)
			b := a + rng.IntN(p.Width-a+1)
			samePixels(t, paths, &g, p, py, a, b)
		}
	}
}

// TestAllPathsSameBitsWideRows: rows wider than a lane pass (laneSeg pixels), so that the vector
// kernels refill lanes across pass boundaries, with pixels that escape at every count and pixels
// that reach max_iter mixed in a row (both refill paths, in registers and through memory), give
// the portable kernel's counts, on whole rows and on ranges that start and end anywhere.
func TestAllPathsSameBitsWideRows(t *testing.T) {
	paths := impls()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range []MandelParams{
		{Width: 1300, Height: 9, CenterX: -0.5, CenterY: 0.1, Span: 3, MaxIter: 300},
		{Width: 1100, Height: 5, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002, MaxIter: 2000},
		{Width: 1029, Height: 3, CenterX: -1.25, CenterY: 0.02, Span: 0.3, MaxIter: 64},
	} {
		g := newMandelGeom(p)
		for py := range p.Height {
			ranges := [][2]int{{0, p.Width}}
			for range 4 {
				a := rng.IntN(p.Width)
				ranges = append(ranges, [2]int{a, a + rng.IntN(p.Width-a+1)})
			}
			for _, r := range ranges {
				samePixels(t, paths, &g, p, py, r[0], r[1])
			}
		}
	}
}

// FuzzAllPathsSameBits: any valid view, row and range gives every kernel path the portable
// kernel's counts (the vector paths' two ways of refilling a lane included). Run it with
// `GOEXPERIMENT=simd go test -fuzz FuzzAllPathsSameBits ./compute/` for a wider search.
func FuzzAllPathsSameBits(f *testing.F) {
	f.Add(uint16(1300), -0.5, 0.1, 3.0, uint16(300), uint16(4), uint16(0), uint16(1300))
	f.Add(uint16(1100), -0.743643887, 0.131825904, 0.002, uint16(2000), uint16(2), uint16(17), uint16(1029))
	f.Add(uint16(9), 0.2501, 0.0, 1e-3, uint16(5000), uint16(0), uint16(3), uint16(8))
	paths := impls()
	f.Fuzz(func(t *testing.T, width uint16, cx, cy, span float64, maxIter, py, a, b uint16) {
		row := int(py % 64)
		p := MandelParams{Width: int(width%2048) + 1, Height: row + 1, CenterX: cx, CenterY: cy, Span: span, MaxIter: int(maxIter%5000) + 1}
		if p.Validate() != nil {
			return
		}
		lo := int(a) % p.Width
		hi := lo + int(b)%(p.Width-lo+1)
		g := newMandelGeom(p)
		samePixels(t, paths, &g, p, row, lo, hi)
	})
}

// samePixels fails t unless every path computes pixels [a, b) of row py of view p (geometry g)
// as the portable kernel does.
func samePixels(t *testing.T, paths []kernelImpl, g *mandelGeom, p MandelParams, py, a, b int) {
	t.Helper()
	want := make([]uint32, b-a)
	mandelPortable(g, py, a, b, want)
	for _, k := range paths {
		got := make([]uint32, b-a)
		k.mandel(g, py, a, b, got)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s %+v row %d [%d,%d) px %d: %d, portable %d", k.name, p, py, a, b, a+i, got[i], want[i])
			}
		}
	}
}

func names(ks []kernelImpl) []string {
	var s []string
	for _, k := range ks {
		s = append(s, k.name)
	}
	return s
}

// --- chunking never changes a result ---

func TestPiChunkingsEqualOneRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 3_000_001
	for _, seed := range []uint64{0, 7, 42, 1 << 63, ^uint64(0)} {
		whole := PiHits(seed, 0, n)
		for trial := range 5 {
			var sum uint64
			for s := uint64(0); s < n; {
				e := min(s+uint64(rng.IntN(400_000))+1, n)
				if trial%2 == 0 {
					sum += PiHits(seed, s, e)
				} else {
					h, done := PiHitsParallel(seed, s, e, 1+rng.IntN(4), nil)
					if done != e-s {
						t.Fatalf("parallel [%d,%d) done %d", s, e, done)
					}
					sum += h
				}
				s = e
			}
			if sum != whole {
				t.Fatalf("seed %d trial %d: chunked %d, whole %d", seed, trial, sum, whole)
			}
		}
	}
}

func TestMandelChunkedEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range testViews {
		whole := make([]uint32, p.Width*p.Height)
		if err := MandelRows(p, 0, p.Height, whole); err != nil {
			t.Fatal(err)
		}
		for trial := range 6 {
			got := make([]uint32, len(whole))
			for r := 0; r < p.Height; {
				e := min(r+1+rng.IntN(5), p.Height)
				var err error
				if trial%2 == 0 {
					err = MandelRows(p, r, e, got[r*p.Width:])
				} else {
					var done int
					done, err = MandelPixels(p, r*p.Width, e*p.Width, got[r*p.Width:], 1+rng.IntN(4), nil)
					if done != (e-r)*p.Width {
						t.Fatalf("done %d of %d", done, (e-r)*p.Width)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				r = e
			}
			for i := range whole {
				if got[i] != whole[i] {
					t.Fatalf("trial %d pixel %d: chunked %d, whole %d", trial, i, got[i], whole[i])
				}
			}
		}
	}
}

// --- stopping keeps an exact prefix ---

// stopAfter returns a Stop that starts answering true after k polls (counted across goroutines).
func stopAfter(k int64) (Stop, *atomic.Int64) {
	var polls atomic.Int64
	return func() bool { return polls.Add(1) > k }, &polls
}

func TestPiStopKeepsExactPrefix(t *testing.T) {
	const n = 1 << 26
	for _, workers := range []int{1, 2, 4} {
		for _, k := range []int64{0, 1, 3, 10} {
			stop, _ := stopAfter(k)
			hits, done := PiHitsParallel(9, 100, 100+n, workers, stop)
			// k polls answered false let at most k blocks start; each is at most piMaxBlock.
			if done > uint64(k)*piMaxBlock {
				t.Errorf("workers %d stop after %d polls: done %d > %d", workers, k, done, uint64(k)*piMaxBlock)
			}
			if k > 0 && done == 0 {
				t.Errorf("workers %d: no progress before the stop", workers)
			}
			if want := PiHits(9, 100, 100+done); hits != want {
				t.Errorf("workers %d stop after %d: prefix hits %d, exact %d", workers, k, hits, want)
			}
		}
	}
	var flag atomic.Bool
	flag.Store(true)
	if h, d := PiHitsParallel(1, 0, 1e9, 2, StopFlag(&flag)); h != 0 || d != 0 {
		t.Errorf("stopped before starting: hits %d done %d", h, d)
	}
}

func TestMandelStopKeepsExactPrefix(t *testing.T) {
	p := MandelParams{Width: 300, Height: 200, CenterX: -0.5, CenterY: 0, Span: 3, MaxIter: 3000}
	whole := make([]uint32, p.Width*p.Height)
	if err := MandelRows(p, 0, p.Height, whole); err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 3} {
		for _, k := range []int64{0, 1, 2, 5} {
			stop, _ := stopAfter(k)
			out := make([]uint32, len(whole))
			done, err := MandelPixels(p, 0, len(whole), out, workers, stop)
			if err != nil {
				t.Fatal(err)
			}
			if done >= len(whole) {
				t.Errorf("workers %d stop after %d polls: finished everything", workers, k)
			}
			for i := 0; i < done; i++ {
				if out[i] != whole[i] {
					t.Fatalf("workers %d: prefix pixel %d = %d, want %d", workers, i, out[i], whole[i])
				}
			}
			// Resuming at the prefix gives the whole image.
			if _, err := MandelPixels(p, done, len(whole), out[done:], workers, nil); err != nil {
				t.Fatal(err)
			}
			for i := range whole {
				if out[i] != whole[i] {
					t.Fatalf("resumed pixel %d = %d, want %d", i, out[i], whole[i])
				}
			}
		}
	}
}

// TestMandelStopBoundsWork checks the poll interval: between two polls a worker does at most
// about mandelPollIters iterations plus one group, whatever max_iter is.
func TestMandelStopBoundsWork(t *testing.T) {
	// Every pixel is inside the set: each costs max_iter iterations.
	p := MandelParams{Width: 64, Height: 64, CenterX: -0.1, CenterY: 0, Span: 0.05, MaxIter: 200_000}
	stop, _ := stopAfter(2) // the first block's start plus one poll inside it
	out := make([]uint32, p.Width*p.Height)
	done, err := MandelPixels(p, 0, len(out), out, 1, stop)
	if err != nil {
		t.Fatal(err)
	}
	maxPixels := mandelPollIters/p.MaxIter + 1 + mandelGroupSize(p.MaxIter)
	if done == 0 || done > maxPixels+mandelGroup {
		t.Errorf("done %d pixels, want 1..%d", done, maxPixels+mandelGroup)
	}
}

func TestMandelRejectsBadInput(t *testing.T) {
	good := testViews[0]
	out := make([]uint32, good.Width*good.Height)
	cases := []struct {
		name string
		p    MandelParams
		a, b int
		out  []uint32
	}{
		{"rows past the end", good, 0, good.Height + 1, out},
		{"short buffer", good, 0, good.Height, out[:10]},
		{"zero width", MandelParams{Width: 0, Height: 3, Span: 1, MaxIter: 1}, 0, 1, out},
		{"nan span", MandelParams{Width: 3, Height: 3, Span: nan(), MaxIter: 1}, 0, 1, out},
		{"reversed", good, 2, 1, out},
	}
	for _, c := range cases {
		if err := MandelRows(c.p, c.a, c.b, c.out); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func nan() float64 { var z float64; return z / z }

func TestValidateNamesTheField(t *testing.T) {
	base := MandelParams{Width: 10, Height: 10, Span: 1, MaxIter: 10}
	for field, mut := range map[string]func(*MandelParams){
		"width":    func(p *MandelParams) { p.Width = 16385 },
		"height":   func(p *MandelParams) { p.Height = 0 },
		"max_iter": func(p *MandelParams) { p.MaxIter = 1_000_001 },
		"span":     func(p *MandelParams) { p.Span = -1 },
		"center_x": func(p *MandelParams) { p.CenterX = nan() },
	} {
		p := base
		mut(&p)
		err := p.Validate()
		if err == nil || len(err.Error()) < len(field) || err.Error()[:len(field)] != field {
			t.Errorf("%s: error %v does not name the field", field, err)
		}
	}
	if err := base.Validate(); err != nil {
		t.Errorf("valid params rejected: %v", err)
	}
}

// --- benchmarks (single goroutine, per path) ---

func BenchmarkPi(b *testing.B) {
	for _, k := range impls() {
		b.Run(k.name, func(b *testing.B) {
			const n = 1 << 20
			var s uint64
			for i := 0; b.Loop(); i++ {
				s += k.pi(7, uint64(i)*n, uint64(i+1)*n)
			}
			b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds()/1e9, "Gsamples/s")
			sinkU64 = s
		})
	}
}

var sinkU64 uint64

// BenchmarkMandel renders the seahorse-valley view that scripts/bench-kernels also gives to the
// C reference (same parameters, same iteration count).
func BenchmarkMandel(b *testing.B) {
	p := benchView
	g := newMandelGeom(p)
	out := make([]uint32, p.Width)
	for _, k := range impls() {
		b.Run(k.name, func(b *testing.B) {
			var iters uint64
			for b.Loop() {
				for py := 0; py < p.Height; py++ {
					k.mandel(&g, py, 0, p.Width, out)
					for _, v := range out {
						iters += uint64(v)
					}
				}
			}
			b.ReportMetric(float64(iters)/b.Elapsed().Seconds()/1e9, "Giters/s")
		})
	}
}

// benchView is the image the benchmark script renders in C and Go alike.
var benchView = MandelParams{Width: 320, Height: 240, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.002, MaxIter: 2000}

func ExamplePiHits() {
	hits := PiHits(7, 0, 1000)
	fmt.Println(hits, float64(4*hits)/1000)
	// Output: 810 3.24
}

// TestKernelChoice checks the choice of kernels: KernelsEnv's format round-trips through
// KernelPath's, a value naming an unusable path is ignored, and the calibration picks usable
// paths and reports every candidate.
func TestKernelChoice(t *testing.T) {
	ok := impls()
	last := ok[len(ok)-1].name // portable
	for _, v := range []string{last, pathName(ok[0].name, last), pathName(last, ok[0].name)} {
		pi, m, found := fromEnv(ok, v)
		if !found || pathName(pi.name, m.name) != v {
			t.Errorf("%s=%q: found %v, pi %s, mandelbrot %s", KernelsEnv, v, found, pi.name, m.name)
		}
	}
	for _, v := range []string{"", "avx1024", "pi=portable", "mandelbrot=portable", "pi=portable,mandelbrot=sse9", strings.Repeat("x", 100)} {
		if _, _, found := fromEnv(ok, v); found {
			t.Errorf("%s=%q accepted", KernelsEnv, v)
		}
	}
	pi, m, rep := calibrate(ok)
	t.Logf("calibration: pi %s, mandelbrot %s; %s", pi.name, m.name, rep)
	if pi.pi == nil || m.mandel == nil {
		t.Fatal("calibration chose no kernel")
	}
	if len(ok) > 1 {
		for _, k := range ok {
			if !strings.Contains(rep, k.name+" ") {
				t.Errorf("report %q lacks %s", rep, k.name)
			}
		}
	}
	if KernelReport() == "" || KernelPath() == "" {
		t.Error("no kernel path or report")
	}
}
