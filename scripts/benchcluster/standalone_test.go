//go:build linux

package main

import (
	"math"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// A strip of a gridded image is the image's rows bit for bit, wherever it lies and whatever its
// height's parity, and gridding moves the view by under a pixel.
func TestStripViewBitExact(t *testing.T) {
	orig := mandelImg{compute.MandelParams{Width: 777, Height: 437, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, MaxIter: 400}}
	img := orig.gridded()
	s := img.Span / float64(img.Width)
	if d := math.Abs(img.Span/orig.Span - 1); d > 1.0/256 {
		t.Errorf("span moved by %.4f of itself", d)
	}
	if dx, dy := math.Abs(img.CenterX-orig.CenterX), math.Abs(img.CenterY-orig.CenterY); dx > s || dy > s {
		t.Errorf("centre moved by (%g, %g), more than a pixel %g", dx, dy, s)
	}
	p := img.MandelParams
	want := make([]uint32, p.Width*p.Height)
	if err := compute.MandelRows(p, 0, p.Height, want); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][2]int{{0, 1}, {0, 437}, {0, 218}, {5, 17}, {100, 201}, {200, 300}, {436, 437}, {301, 437}} {
		q := stripView(p, b[0], b[1])
		got := make([]uint32, q.Width*q.Height)
		if err := compute.MandelRows(q, 0, q.Height, got); err != nil {
			t.Fatal(err)
		}
		if w := want[b[0]*p.Width : b[1]*p.Width]; !slices.Equal(got, w) {
			diff := 0
			for i := range got {
				if got[i] != w[i] {
					diff++
				}
			}
			t.Errorf("strip rows %d–%d: %d of %d pixels differ from the image's", b[0], b[1], diff, len(got))
		}
	}
}

func TestSplitByCost(t *testing.T) {
	cost := make([]float64, 1000)
	for y := range cost {
		cost[y] = 1
		if y >= 400 && y < 500 {
			cost[y] = 20 // a dear band: its strips are shorter
		}
	}
	for _, n := range []int{1, 4, 7, 64, 999, 1000, 5000} {
		b := splitByCost(cost, n)
		k := min(n, len(cost))
		if len(b) != k+1 || b[0] != 0 || b[k] != len(cost) {
			t.Fatalf("n=%d: bounds %v", n, b)
		}
		for j := 1; j <= k; j++ {
			if b[j] <= b[j-1] {
				t.Fatalf("n=%d: empty strip %d in %v", n, j-1, b)
			}
		}
		if k > 64 {
			continue
		}
		each := sum(cost) / float64(k)
		for j := 0; j < k; j++ {
			if c := sum(cost[b[j]:b[j+1]]); math.Abs(c-each) > 20 {
				t.Errorf("n=%d: strip %d (rows %d–%d) costs %g, not about %g", n, j, b[j], b[j+1], c, each)
			}
		}
	}
}

func TestSpreadOrder(t *testing.T) {
	for _, n := range []int{1, 2, 5, 16, 37, 100} {
		for _, u := range []float64{0, 0.3, 0.999} {
			o := spreadOrder(n, u)
			if got := slices.Sorted(slices.Values(o)); !slices.Equal(got, seq(n)) {
				t.Fatalf("n=%d u=%g: not a permutation: %v", n, u, o)
			}
			// the first k (a power of 2, k ≤ n) are spread evenly round 0…n−1: no circular gap
			// between them is longer than n/k rounded up, plus one
			for k := 2; k <= n; k *= 2 {
				f := slices.Sorted(slices.Values(o[:k]))
				for i := range f {
					gap := f[(i+1)%k] - f[i]
					if i == k-1 {
						gap += n
					}
					if gap > (n+k-1)/k+1 {
						t.Errorf("n=%d u=%g: the first %d, %v, leave a gap of %d", n, u, k, o[:k], gap)
					}
				}
			}
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
