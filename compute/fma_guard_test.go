package compute

import (
	"math"
	"testing"
)

// The Mandelbrot definition (docs/design.md §4) rounds every operation on its own. Go may fuse a
// product and an addition into one FMA instruction (one rounding) wherever a float64() conversion
// around the product is missing: on arm64 always, on amd64 with GOAMD64=v3 and up. That changes
// counts, so the kernels write those conversions, scripts/check-fma checks the built binaries for
// FMA instructions, and the references (testViews, goldenMandel) must notice any one fusion: this
// file proves they do, by computing each fused variant with math.FMA in a copy of the loop.

// fusion names one multiply-add of the definition computed with a single rounding.
type fusion int

const (
	fuseNone     fusion = iota
	fuseEscapeZr        // zr·zr + zi2 > 4: fma(zr, zr, zi2)
	fuseEscapeZi        // zr2 + zi·zi > 4: fma(zi, zi, zr2)
	fuseZrUpdZr         // zr = (zr·zr − zi2) + cr: fma(zr, zr, −zi2) + cr
	fuseZrUpdZi         // zr = (zr2 − zi·zi) + cr: fma(−zi, zi, zr2) + cr
	fuseZiUpd           // zi = 2·zr·zi + ci in one rounding: fma(zr+zr, zi, ci)
	fuseCr              // cr = cx + (px − W/2 + 0.5)·s: fma(px − W/2 + 0.5, s, cx)
	fuseCi              // ci = cy − (py − H/2 + 0.5)·s: fma(−(py − H/2 + 0.5), s, cy)
	fuseTwice           // t + t with one t = zr·zi unrounded: fma(zr, zi, t) + ci (exact, see below)
	numFusions
)

var fusionNames = [numFusions]string{"none", "escape test zr·zr", "escape test zi·zi", "zr update zr·zr",
	"zr update zi·zi", "zi update 2·zr·zi+ci", "pixel geometry cr", "pixel geometry ci", "t+t"}

// mandelFused computes every pixel of p with the reference loop, fusing the operation f.
func mandelFused(p MandelParams, f fusion) []uint32 {
	g := newMandelGeom(p)
	out := make([]uint32, p.Width*p.Height)
	for py := 0; py < p.Height; py++ {
		ci := g.ci(py)
		if f == fuseCi {
			ci = math.FMA(-(float64(py) - g.halfH + 0.5), g.s, g.cy)
		}
		for px := 0; px < p.Width; px++ {
			cr := g.cr(px)
			if f == fuseCr {
				cr = math.FMA(float64(px)-g.halfW+0.5, g.s, g.cx)
			}
			var zr, zi float64
			var n uint32
			for ; n < g.maxIter; n++ {
				zr2 := float64(zr * zr)
				zi2 := float64(zi * zi)
				r2 := zr2 + zi2
				switch f {
				case fuseEscapeZr:
					r2 = math.FMA(zr, zr, zi2)
				case fuseEscapeZi:
					r2 = math.FMA(zi, zi, zr2)
				}
				if r2 > 4 {
					break
				}
				t := float64(zr * zi)
				nzi := (t + t) + ci
				nzr := (zr2 - zi2) + cr
				switch f {
				case fuseZrUpdZr:
					nzr = math.FMA(zr, zr, -zi2) + cr
				case fuseZrUpdZi:
					nzr = math.FMA(-zi, zi, zr2) + cr
				case fuseZiUpd:
					nzi = math.FMA(zr+zr, zi, ci)
				case fuseTwice:
					nzi = math.FMA(zr, zi, t) + ci
				}
				zr, zi = nzr, nzi
			}
			out[py*p.Width+px] = n
		}
	}
	return out
}

// TestFusedVariantsCaught builds each fused variant of the loop and checks that the references
// catch it: at least one view's counts differ from its golden checksum (which TestGoldenValues
// and TestMandelMatchesBigFloatReference hold every kernel to, on every architecture scripts/test
// runs).
func TestFusedVariantsCaught(t *testing.T) {
	for vi, p := range testViews { // the copy of the loop is the definition when nothing is fused
		if got := fnv32(mandelFused(p, fuseNone)); got != goldenMandel[vi] {
			t.Fatalf("unfused copy of the loop, view %d: checksum %#x, golden %#x", vi, got, goldenMandel[vi])
		}
	}
	for f := fuseNone + 1; f < numFusions; f++ {
		var caught []int
		for vi, p := range testViews {
			if fnv32(mandelFused(p, f)) != goldenMandel[vi] {
				caught = append(caught, vi)
			}
		}
		switch {
		case f == fuseTwice && len(caught) > 0:
			t.Errorf("%s: changed views %v, but fusing it is exact", fusionNames[f], caught)
		case f != fuseTwice && len(caught) == 0:
			t.Errorf("fusing the %s changes no reference value: the references would not catch it", fusionNames[f])
		default:
			t.Logf("%-22s changes views %v", fusionNames[f], caught)
		}
	}
}

// TestFusedTwiceIsExact backs the one fusion the references cannot catch because it changes
// nothing: with p = zr·zi exact and t = fl(p), fl(p + t) = 2t always (p + t = 2t + (p − t) and
// |p − t| ≤ ulp(t)/2 is at most a quarter of the spacing around 2t, so it rounds to 2t). The
// float64() around zr·zi in the kernels only keeps the code uniform.
func TestFusedTwiceIsExact(t *testing.T) {
	vals := []float64{1.0000000000000002, 0.1, 1.4029366979003475, -1.4254012142847605, 3.0000000000000004,
		1e-300, 1e300, 0.7436438870000001, -0.131825904}
	for _, a := range vals {
		for _, b := range vals {
			p := float64(a * b)
			if math.IsInf(p+p, 0) {
				continue
			}
			if got := math.FMA(a, b, p); got != p+p {
				t.Errorf("fma(%v, %v, fl(%v·%v)) = %v, want 2·fl(a·b) = %v", a, b, a, b, got, p+p)
			}
		}
	}
}

// TestBoundaryViewsAsBuilt checks the constructed pixels of testViews 3–8 (see there) escape
// where the construction says: if a change to the views lost one, the proof above would still
// pass by luck or fail without saying why.
func TestBoundaryViewsAsBuilt(t *testing.T) {
	for _, c := range []struct {
		view, px, py int
		want         uint32
	}{{3, 0, 0, 2}, {3, 1, 0, 2}, {3, 2, 0, 2}, {4, 0, 0, 1}, {4, 1, 0, 2},
		{5, 0, 0, 3}, {5, 1, 0, 3}, {5, 2, 0, 3}, {6, 0, 0, 1}, {6, 1, 0, 3},
		{7, 6, 3, 2}, {8, 3, 0, 2}} {
		p := testViews[c.view]
		out := make([]uint32, p.Width*p.Height)
		if err := MandelRows(p, 0, p.Height, out); err != nil {
			t.Fatal(err)
		}
		if got := out[c.py*p.Width+c.px]; got != c.want {
			t.Errorf("view %d pixel (%d, %d): %d, built to be %d", c.view, c.px, c.py, got, c.want)
		}
	}
}
