package compute

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Limits of a Mandelbrot job: they bound memory (16384² counts = 1 GiB) and the time a
// single pixel may take.
const (
	MaxMandelSide = 16384
	MaxMandelIter = 1_000_000
)

// MandelParams are the parameters of a Mandelbrot job (docs/design.md §4): a Width×Height image of
// the view centred on (CenterX, CenterY) that is Span wide in the complex plane, iterated at most
// MaxIter times per pixel. Rows are the work units; row 0 is the top.
type MandelParams struct {
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	CenterX float64 `json:"center_x"`
	CenterY float64 `json:"center_y"`
	Span    float64 `json:"span"`
	MaxIter int     `json:"max_iter"`
}

// Validate reports the first invalid field, naming it and saying why, so an API can answer
// 400 with a message a user can act on.
func (p MandelParams) Validate() error {
	switch {
	case p.Width < 1 || p.Width > MaxMandelSide:
		return fmt.Errorf("width: %d is outside 1–%d", p.Width, MaxMandelSide)
	case p.Height < 1 || p.Height > MaxMandelSide:
		return fmt.Errorf("height: %d is outside 1–%d", p.Height, MaxMandelSide)
	case p.MaxIter < 1 || p.MaxIter > MaxMandelIter:
		return fmt.Errorf("max_iter: %d is outside 1–%d", p.MaxIter, MaxMandelIter)
	case !isFinite(p.CenterX):
		return fmt.Errorf("center_x: %v is not a finite number", p.CenterX)
	case !isFinite(p.CenterY):
		return fmt.Errorf("center_y: %v is not a finite number", p.CenterY)
	case !isFinite(p.Span):
		return fmt.Errorf("span: %v is not a finite number", p.Span)
	case p.Span <= 0:
		return fmt.Errorf("span: %v must be greater than 0", p.Span)
	case !isFinite(p.Span / float64(p.Width)):
		return fmt.Errorf("span: %v divided by the width is not a finite number", p.Span)
	}
	return nil
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// mandelGeom is the per-job geometry every kernel shares: s = span / W and the half sizes,
// computed once exactly as docs/design.md §4 writes them.
type mandelGeom struct {
	w, h         int
	cx, cy, s    float64
	halfW, halfH float64
	maxIter      uint32
}

func newMandelGeom(p MandelParams) mandelGeom {
	return mandelGeom{
		w: p.Width, h: p.Height,
		cx: p.CenterX, cy: p.CenterY,
		s:     p.Span / float64(p.Width),
		halfW: float64(p.Width) / 2, halfH: float64(p.Height) / 2,
		maxIter: uint32(p.MaxIter),
	}
}

// cr returns the real part of pixel column px: cx + (px − W/2 + 0.5)·s. The float64 conversion
// around the product forbids fusing it with the addition (Go spec, "Arithmetic operators").
func (g *mandelGeom) cr(px int) float64 {
	return g.cx + float64((float64(px)-g.halfW+0.5)*g.s)
}

// ci returns the imaginary part of row py: cy − (py − H/2 + 0.5)·s.
func (g *mandelGeom) ci(py int) float64 {
	return g.cy - float64((float64(py)-g.halfH+0.5)*g.s)
}

// mandelPortable is the scalar kernel: two pixels iterate in one loop so that the latency of one
// point's dependency chain hides the other's; when one escapes the other finishes alone.
func mandelPortable(g *mandelGeom, py, pxStart, pxEnd int, out []uint32) uint64 {
	ci := g.ci(py)
	m := g.maxIter
	var iters uint64
	px := pxStart
	for ; px+2 <= pxEnd; px += 2 {
		cra, crb := g.cr(px), g.cr(px+1)
		var ar, ai, br, bi float64
		var n uint32
		na, nb := m, m
		for ; n < m; n++ {
			ar2, ai2 := float64(ar*ar), float64(ai*ai)
			br2, bi2 := float64(br*br), float64(bi*bi)
			ea, eb := ar2+ai2 > 4, br2+bi2 > 4
			if ea || eb {
				if ea {
					na = n
				}
				if eb {
					nb = n
				}
				break
			}
			ta, tb := float64(ar*ai), float64(br*bi)
			ai = (ta + ta) + ci
			ar = (ar2 - ai2) + cra
			bi = (tb + tb) + ci
			br = (br2 - bi2) + crb
		}
		if n < m {
			// One of the pair escaped at n; continue the other from its current state.
			if na == m {
				na = mandelFrom(ar, ai, cra, ci, n, m)
			} else if nb == m {
				nb = mandelFrom(br, bi, crb, ci, n, m)
			}
		}
		out[px-pxStart], out[px+1-pxStart] = na, nb
		iters += uint64(na) + uint64(nb) + 2
	}
	for ; px < pxEnd; px++ {
		v := mandelFrom(0, 0, g.cr(px), ci, 0, m)
		out[px-pxStart] = v
		iters += uint64(v) + 1
	}
	return iters
}

// mandelFrom is the reference loop of docs/design.md §4, continued from iteration n with state
// (zr, zi): mandelFrom(0, 0, cr, ci, 0, maxIter) iterates point (cr, ci) from the start. Every
// kernel's result must equal its bits.
func mandelFrom(zr, zi, cr, ci float64, n, maxIter uint32) uint32 {
	for ; n < maxIter; n++ {
		zr2 := float64(zr * zr)
		zi2 := float64(zi * zi)
		if zr2+zi2 > 4 {
			break
		}
		t := float64(zr * zi)
		zi = (t + t) + ci
		zr = (zr2 - zi2) + cr
	}
	return n
}

// mandelPollIters is how many iterations a Mandelbrot worker does between two polls of its Stop
// (a few milliseconds at most, whatever max_iter is).
const mandelPollIters = 1 << 20

// mandelGroup is the fewest pixels a worker hands the kernel at once (a multiple of every vector
// path's width). Groups grow to up to mandelMaxGroup pixels when max_iter is small, so vector
// kernels can stream pixels through their lanes, and stay small when a pixel may take long, so
// the poll interval holds.
const (
	mandelGroup    = 8
	mandelMaxGroup = 512
)

func mandelGroupSize(maxIter int) int {
	return max(mandelGroup, min(mandelMaxGroup, mandelPollIters/max(maxIter, 1)/mandelGroup*mandelGroup))
}

// MandelRows writes the iteration counts of rows [rowStart, rowEnd) into out (row-major, top
// row first, len(out) ≥ (rowEnd−rowStart)·Width) on the calling goroutine. Chunked and whole
// computations give the same bits.
func MandelRows(p MandelParams, rowStart, rowEnd int, out []uint32) error {
	if rowStart < 0 || rowEnd < rowStart || rowEnd > p.Height {
		return fmt.Errorf("mandelbrot rows [%d,%d): outside the image's %d rows", rowStart, rowEnd, p.Height)
	}
	_, err := MandelPixels(p, rowStart*p.Width, rowEnd*p.Width, out, 1, nil)
	return err
}

// ErrShortBuffer is returned when an output slice cannot hold the requested range.
var ErrShortBuffer = errors.New("output buffer too short")

// MandelPixels computes pixels [first, end) in row-major order (pixel k is column k mod W of row
// k div W) into out[0:end−first] on up to workers goroutines, polling stop about every
// mandelPollIters iterations. It returns the finished prefix: out[0:done] is exact and final
// even when stop fired, so a paused chunk resumes at first+done and loses nothing. A chunk's
// result is made of whole rows; pixels let a pause inside a long row keep its work.
func MandelPixels(p MandelParams, first, end int, out []uint32, workers int, stop Stop) (done int, err error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("mandelbrot: %w", err)
	}
	total := p.Width * p.Height
	if first < 0 || end < first || end > total {
		return 0, fmt.Errorf("mandelbrot pixels [%d,%d): outside the image's %d pixels", first, end, total)
	}
	n := end - first
	if len(out) < n {
		return 0, fmt.Errorf("mandelbrot pixels [%d,%d): %w (%d < %d)", first, end, ErrShortBuffer, len(out), n)
	}
	if n == 0 {
		return 0, nil
	}
	if workers < 1 {
		workers = 1
	}
	g := newMandelGeom(p)
	k := kernel()
	group := mandelGroupSize(p.MaxIter)
	bs := max(min(n/(workers*8), 4096), group)
	nblocks := (n + bs - 1) / bs
	workers = min(workers, nblocks)

	var next atomic.Int64
	var mu sync.Mutex
	partial := n // the lowest unfinished pixel offset of a block cut short by stop
	work := func() {
		var since uint64
		for {
			if stop != nil && stop() {
				return
			}
			b := int(next.Add(1) - 1)
			if b >= nblocks {
				return
			}
			s := b * bs
			e := min(s+bs, n)
			for gs := s; gs < e; {
				ge := min(gs+group, e)
				since += mandelSpan(k, &g, first+gs, first+ge, out[gs:ge])
				gs = ge
				if since >= mandelPollIters && gs < e {
					since = 0
					if stop != nil && stop() {
						mu.Lock()
						partial = min(partial, gs)
						mu.Unlock()
						return
					}
				}
			}
		}
	}
	runWorkers(workers, work)
	taken := min(int(next.Load()), nblocks)
	return min(partial, taken*bs, n), nil
}

// mandelSpan runs the kernel over pixels [a, b), which may cross a row boundary.
func mandelSpan(k *kernelImpl, g *mandelGeom, a, b int, out []uint32) uint64 {
	var iters uint64
	for a < b {
		py, px := a/g.w, a%g.w
		e := min(b, (py+1)*g.w)
		iters += k.mandel(g, py, px, px+(e-a), out[:e-a])
		out = out[e-a:]
		a = e
	}
	return iters
}
