//go:build goexperiment.simd && amd64

package compute

import (
	"math"
	"math/bits"
	"simd/archsimd"
)

// The vector Mandelbrot kernels keep every lane busy: the pixels of a row segment stream through
// the lanes, and a lane whose pixel escapes (or reaches max_iter) is refilled with the next pixel
// at once, so one slow pixel never leaves its neighbours' lanes idle. In the common case (a pixel
// or two escaped, none at max_iter, the segment has more) the refill stays in registers: the new
// pixel's cr is blended into its lane and the lane's z and squares are zeroed, which is the first
// step of a new pixel bit for bit; only at a max_iter deadline or the end of a segment do the
// lanes go through memory (a deep view's pixel escapes every 10 steps of 8 lanes or so, and the
// round trip through memory cost more than the steps: 1.30 → 1.90 G iterations/s with AVX-512,
// 1.32 → 1.55 with AVX2, BenchmarkMandel on one core). Several vectors are
// interleaved to hide the latency of the z² dependency chain. A lane's iteration count is not
// kept in a vector: it is the global step minus the step at which its pixel entered, and the
// earliest max_iter deadline costs one scalar compare per step.
//
// The refill path touches lane state only as integers (float64 bits): Go compiles scalar
// float64 code to legacy SSE instructions, and an SSE instruction while the upper halves of the
// YMM registers are dirty costs hundreds of cycles on some CPUs (this one included). The real
// parts of the segment's pixels are computed up front with vector arithmetic, each operation
// rounded on its own exactly as [mandelGeom.cr] does.

// laneSeg is how many pixels one pass of the lane loop takes (its cr values are precomputed).
const laneSeg = 512

// laneState is the scalar side of the lanes: their spilled registers (as float64 bits), which
// pixel each lane holds and since when.
type laneState struct {
	zr, zi, cr, ci [16]uint64
	pix            [16]int   // offset into out, or −1 for an idle lane
	t0             [16]int64 // global step at which the lane's pixel entered
	crs            [laneSeg]uint64
	rowCi          uint64 // bits of the row's ci
	next, n        int    // next pixel offset to hand out; pixels in the segment
	active         int    // lanes holding a pixel
	iters          uint64 // sum of finished counts (+1 per pixel)
}

const idleT0 = -1 << 62

// fill puts the next pixel, or nothing, into lane l at step t. An idle lane gets c = 0, which
// never escapes, and a t0 so far back that it never reaches max_iter.
func (s *laneState) fill(l int, t int64) {
	s.zr[l], s.zi[l] = 0, 0
	if s.next < s.n {
		s.pix[l], s.cr[l], s.ci[l], s.t0[l] = s.next, s.crs[s.next], s.rowCi, t
		s.next++
		s.active++
		return
	}
	s.pix[l], s.cr[l], s.ci[l], s.t0[l] = -1, 0, 0, idleT0
}

// settle writes out the lanes [lo, lo+width) whose pixel is finished at step t — escaped (bit i
// of esc) or at max_iter — and refills them.
func (s *laneState) settle(lo, width int, esc uint8, t, maxIter int64, out []uint32) {
	for i := range width {
		l := lo + i
		if s.pix[l] < 0 {
			continue
		}
		n := t - s.t0[l]
		if n == maxIter || esc&(1<<i) != 0 {
			out[s.pix[l]] = uint32(n)
			s.iters += uint64(n) + 1
			s.active--
			s.fill(l, t)
		}
	}
}

// swap writes out lane l's pixel, escaped at step t, and gives the lane the next pixel of the
// segment (the caller checked there is one); it returns that pixel's cr bits, which the caller
// blends into the lane's register. A vector pass calls it where a pixel or two escaped before any
// lane's max_iter deadline: the common case, which then keeps every lane in registers.
func (s *laneState) swap(l int, t int64, out []uint32) uint64 {
	n := t - s.t0[l]
	out[s.pix[l]] = uint32(n)
	s.iters += uint64(n) + 1
	p := s.next
	s.next++
	c := s.crs[p]
	s.pix[l], s.t0[l], s.cr[l] = p, t, c
	return c
}

// refill4 hands each lane lo+i of a four-lane vector whose bit i is set in esc (its pixel
// escaped at step t) the next pixel (swap), and returns cr with those lanes' new cr blended in.
func (s *laneState) refill4(cr archsimd.Float64x4, esc uint8, lo int, t int64, out []uint32, lane archsimd.Int64x4) archsimd.Float64x4 {
	for ; esc != 0; esc &= esc - 1 {
		i := bits.TrailingZeros8(esc)
		c := archsimd.BroadcastUint64x4(s.swap(lo+i, t, out)).AsFloat64x4()
		cr = c.Merge(cr, lane.Equal(archsimd.BroadcastInt64x4(int64(i))))
	}
	return cr
}

// refill8 is refill4 for an eight-lane vector.
func (s *laneState) refill8(cr archsimd.Float64x8, esc uint8, lo int, t int64, out []uint32) archsimd.Float64x8 {
	for ; esc != 0; esc &= esc - 1 {
		i := bits.TrailingZeros8(esc)
		c := archsimd.BroadcastUint64x8(s.swap(lo+i, t, out)).AsFloat64x8()
		cr = c.Merge(cr, archsimd.Mask64x8FromBits(1<<i))
	}
	return cr
}

// deadline is the smallest step at which an active lane reaches max_iter.
func (s *laneState) deadline(maxIter int64, lanes int) int64 {
	d := int64(math.MaxInt64)
	for l := range lanes {
		if s.pix[l] >= 0 {
			d = min(d, s.t0[l]+maxIter)
		}
	}
	return d
}

// mandelLanes runs the lane loop over a row segment in passes of laneSeg pixels.
func mandelLanes(g *mandelGeom, py, pxStart, pxEnd int, out []uint32,
	pass func(g *mandelGeom, s *laneState, out []uint32)) uint64 {
	var s laneState
	s.rowCi = math.Float64bits(g.ci(py))
	var iters uint64
	for a := pxStart; a < pxEnd; a += laneSeg {
		b := min(a+laneSeg, pxEnd)
		s.next, s.n, s.active, s.iters = 0, b-a, 0, 0
		crRow(g, a, s.crs[:b-a])
		pass(g, &s, out[a-pxStart:b-pxStart])
		iters += s.iters
	}
	return iters
}

// crRow computes cr for columns px0… into dst with four-lane vector arithmetic:
// cx + ((px − W/2) + 0.5)·s, each operation rounded on its own like mandelGeom.cr.
func crRow(g *mandelGeom, px0 int, dst []uint64) {
	f := float64(px0) // exact: columns are far below 2⁵³
	pxv := archsimd.LoadFloat64x4(&[4]float64{f, f + 1, f + 2, f + 3})
	four := archsimd.BroadcastFloat64x4(4)
	half := archsimd.BroadcastFloat64x4(0.5)
	hw := archsimd.BroadcastFloat64x4(g.halfW)
	sv := archsimd.BroadcastFloat64x4(g.s)
	cx := archsimd.BroadcastFloat64x4(g.cx)
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		cx.Add(pxv.Sub(hw).Add(half).Mul(sv)).AsUint64x4().Store((*[4]uint64)(dst[i : i+4]))
		pxv = pxv.Add(four)
	}
	if i < len(dst) {
		var tail [4]uint64
		cx.Add(pxv.Sub(hw).Add(half).Mul(sv)).AsUint64x4().Store(&tail)
		copy(dst[i:], tail[:])
	}
	archsimd.ClearAVXUpperBits()
}

// mandelAVX2 interleaves two vectors of four lanes.
func mandelAVX2(g *mandelGeom, py, pxStart, pxEnd int, out []uint32) uint64 {
	return mandelLanes(g, py, pxStart, pxEnd, out, mandelAVX2Pass)
}

func mandelAVX2Pass(g *mandelGeom, s *laneState, out []uint32) {
	m := int64(g.maxIter)
	for l := range 8 {
		s.fill(l, 0)
	}
	deadline := s.deadline(m, 8)
	four := archsimd.BroadcastFloat64x4(4)
	var zero archsimd.Float64x4
	lane := archsimd.LoadInt64x4(&[4]int64{0, 1, 2, 3})
	ar := archsimd.LoadUint64x4((*[4]uint64)(s.zr[0:4])).AsFloat64x4()
	ai := archsimd.LoadUint64x4((*[4]uint64)(s.zi[0:4])).AsFloat64x4()
	acr := archsimd.LoadUint64x4((*[4]uint64)(s.cr[0:4])).AsFloat64x4()
	aci := archsimd.LoadUint64x4((*[4]uint64)(s.ci[0:4])).AsFloat64x4()
	br := archsimd.LoadUint64x4((*[4]uint64)(s.zr[4:8])).AsFloat64x4()
	bi := archsimd.LoadUint64x4((*[4]uint64)(s.zi[4:8])).AsFloat64x4()
	bcr := archsimd.LoadUint64x4((*[4]uint64)(s.cr[4:8])).AsFloat64x4()
	bci := archsimd.LoadUint64x4((*[4]uint64)(s.ci[4:8])).AsFloat64x4()
	for t := int64(0); ; {
		ar2, ai2 := ar.Mul(ar), ai.Mul(ai)
		br2, bi2 := br.Mul(br), bi.Mul(bi)
		ae := ar2.Add(ai2).Greater(four)
		be := br2.Add(bi2).Greater(four)
		if ae.Or(be).ToBits() != 0 || t == deadline {
			ab, bb := ae.ToBits(), be.ToBits()
			if t != deadline && s.next+bits.OnesCount8(ab|bb<<4) <= s.n {
				// The common case, a pixel or two escaped and the segment has more: each escaped
				// lane gets the next pixel in registers (its cr blended in, z and this step's
				// squares zeroed, which is what a new pixel's first step computes), without the
				// round trip of every lane through memory below. No lane is at max_iter (t is
				// before the deadline), and a lane's entry step and pixel stay in s for settle.
				acr = s.refill4(acr, ab, 0, t, out, lane)
				bcr = s.refill4(bcr, bb, 4, t, out, lane)
				ar, ai, ar2, ai2 = zero.Merge(ar, ae), zero.Merge(ai, ae), zero.Merge(ar2, ae), zero.Merge(ai2, ae)
				br, bi, br2, bi2 = zero.Merge(br, be), zero.Merge(bi, be), zero.Merge(br2, be), zero.Merge(bi2, be)
			} else {
				ar.AsUint64x4().Store((*[4]uint64)(s.zr[0:4]))
				ai.AsUint64x4().Store((*[4]uint64)(s.zi[0:4]))
				br.AsUint64x4().Store((*[4]uint64)(s.zr[4:8]))
				bi.AsUint64x4().Store((*[4]uint64)(s.zi[4:8]))
				s.settle(0, 4, ab, t, m, out)
				s.settle(4, 4, bb, t, m, out)
				if s.active == 0 {
					archsimd.ClearAVXUpperBits()
					return
				}
				deadline = s.deadline(m, 8)
				ar = archsimd.LoadUint64x4((*[4]uint64)(s.zr[0:4])).AsFloat64x4()
				ai = archsimd.LoadUint64x4((*[4]uint64)(s.zi[0:4])).AsFloat64x4()
				acr = archsimd.LoadUint64x4((*[4]uint64)(s.cr[0:4])).AsFloat64x4()
				aci = archsimd.LoadUint64x4((*[4]uint64)(s.ci[0:4])).AsFloat64x4()
				br = archsimd.LoadUint64x4((*[4]uint64)(s.zr[4:8])).AsFloat64x4()
				bi = archsimd.LoadUint64x4((*[4]uint64)(s.zi[4:8])).AsFloat64x4()
				bcr = archsimd.LoadUint64x4((*[4]uint64)(s.cr[4:8])).AsFloat64x4()
				bci = archsimd.LoadUint64x4((*[4]uint64)(s.ci[4:8])).AsFloat64x4()
				continue // refilled lanes must compute their own squares first
			}
		}
		at := ar.Mul(ai)
		ai = at.Add(at).Add(aci)
		ar = ar2.Sub(ai2).Add(acr)
		bt := br.Mul(bi)
		bi = bt.Add(bt).Add(bci)
		br = br2.Sub(bi2).Add(bcr)
		t++
	}
}

// mandelAVX2x3 interleaves three vectors of four lanes: more independent chains in flight.
func mandelAVX2x3(g *mandelGeom, py, pxStart, pxEnd int, out []uint32) uint64 {
	return mandelLanes(g, py, pxStart, pxEnd, out, mandelAVX2x3Pass)
}

func mandelAVX2x3Pass(g *mandelGeom, s *laneState, out []uint32) {
	m := int64(g.maxIter)
	for l := range 12 {
		s.fill(l, 0)
	}
	deadline := s.deadline(m, 12)
	four := archsimd.BroadcastFloat64x4(4)
	ar := archsimd.LoadUint64x4((*[4]uint64)(s.zr[0:4])).AsFloat64x4()
	ai := archsimd.LoadUint64x4((*[4]uint64)(s.zi[0:4])).AsFloat64x4()
	acr := archsimd.LoadUint64x4((*[4]uint64)(s.cr[0:4])).AsFloat64x4()
	aci := archsimd.LoadUint64x4((*[4]uint64)(s.ci[0:4])).AsFloat64x4()
	br := archsimd.LoadUint64x4((*[4]uint64)(s.zr[4:8])).AsFloat64x4()
	bi := archsimd.LoadUint64x4((*[4]uint64)(s.zi[4:8])).AsFloat64x4()
	bcr := archsimd.LoadUint64x4((*[4]uint64)(s.cr[4:8])).AsFloat64x4()
	bci := archsimd.LoadUint64x4((*[4]uint64)(s.ci[4:8])).AsFloat64x4()
	cr := archsimd.LoadUint64x4((*[4]uint64)(s.zr[8:12])).AsFloat64x4()
	ci := archsimd.LoadUint64x4((*[4]uint64)(s.zi[8:12])).AsFloat64x4()
	ccr := archsimd.LoadUint64x4((*[4]uint64)(s.cr[8:12])).AsFloat64x4()
	cci := archsimd.LoadUint64x4((*[4]uint64)(s.ci[8:12])).AsFloat64x4()
	for t := int64(0); ; {
		ar2, ai2 := ar.Mul(ar), ai.Mul(ai)
		br2, bi2 := br.Mul(br), bi.Mul(bi)
		cr2, ci2 := cr.Mul(cr), ci.Mul(ci)
		ae := ar2.Add(ai2).Greater(four)
		be := br2.Add(bi2).Greater(four)
		ce := cr2.Add(ci2).Greater(four)
		if ae.Or(be.Or(ce)).ToBits() != 0 || t == deadline {
			ab, bb, cb := ae.ToBits(), be.ToBits(), ce.ToBits()
			if t != deadline && s.next+bits.OnesCount16(uint16(ab)|uint16(bb)<<4|uint16(cb)<<8) <= s.n {
				// As in mandelAVX2Pass: each escaped lane gets the next pixel in registers.
				lane := archsimd.LoadInt64x4(&[4]int64{0, 1, 2, 3})
				acr = s.refill4(acr, ab, 0, t, out, lane)
				bcr = s.refill4(bcr, bb, 4, t, out, lane)
				ccr = s.refill4(ccr, cb, 8, t, out, lane)
				var zero archsimd.Float64x4
				ar, ai, ar2, ai2 = zero.Merge(ar, ae), zero.Merge(ai, ae), zero.Merge(ar2, ae), zero.Merge(ai2, ae)
				br, bi, br2, bi2 = zero.Merge(br, be), zero.Merge(bi, be), zero.Merge(br2, be), zero.Merge(bi2, be)
				cr, ci, cr2, ci2 = zero.Merge(cr, ce), zero.Merge(ci, ce), zero.Merge(cr2, ce), zero.Merge(ci2, ce)
			} else {
				ar.AsUint64x4().Store((*[4]uint64)(s.zr[0:4]))
				ai.AsUint64x4().Store((*[4]uint64)(s.zi[0:4]))
				br.AsUint64x4().Store((*[4]uint64)(s.zr[4:8]))
				bi.AsUint64x4().Store((*[4]uint64)(s.zi[4:8]))
				cr.AsUint64x4().Store((*[4]uint64)(s.zr[8:12]))
				ci.AsUint64x4().Store((*[4]uint64)(s.zi[8:12]))
				s.settle(0, 4, ab, t, m, out)
				s.settle(4, 4, bb, t, m, out)
				s.settle(8, 4, cb, t, m, out)
				if s.active == 0 {
					archsimd.ClearAVXUpperBits()
					return
				}
				deadline = s.deadline(m, 12)
				ar = archsimd.LoadUint64x4((*[4]uint64)(s.zr[0:4])).AsFloat64x4()
				ai = archsimd.LoadUint64x4((*[4]uint64)(s.zi[0:4])).AsFloat64x4()
				acr = archsimd.LoadUint64x4((*[4]uint64)(s.cr[0:4])).AsFloat64x4()
				aci = archsimd.LoadUint64x4((*[4]uint64)(s.ci[0:4])).AsFloat64x4()
				br = archsimd.LoadUint64x4((*[4]uint64)(s.zr[4:8])).AsFloat64x4()
				bi = archsimd.LoadUint64x4((*[4]uint64)(s.zi[4:8])).AsFloat64x4()
				bcr = archsimd.LoadUint64x4((*[4]uint64)(s.cr[4:8])).AsFloat64x4()
				bci = archsimd.LoadUint64x4((*[4]uint64)(s.ci[4:8])).AsFloat64x4()
				cr = archsimd.LoadUint64x4((*[4]uint64)(s.zr[8:12])).AsFloat64x4()
				ci = archsimd.LoadUint64x4((*[4]uint64)(s.zi[8:12])).AsFloat64x4()
				ccr = archsimd.LoadUint64x4((*[4]uint64)(s.cr[8:12])).AsFloat64x4()
				cci = archsimd.LoadUint64x4((*[4]uint64)(s.ci[8:12])).AsFloat64x4()
				continue // refilled lanes must compute their own squares first
			}
		}
		at := ar.Mul(ai)
		ai = at.Add(at).Add(aci)
		ar = ar2.Sub(ai2).Add(acr)
		bt := br.Mul(bi)
		bi = bt.Add(bt).Add(bci)
		br = br2.Sub(bi2).Add(bcr)
		ct := cr.Mul(ci)
		ci = ct.Add(ct).Add(cci)
		cr = cr2.Sub(ci2).Add(ccr)
		t++
	}
}

// mandelAVX512 interleaves two vectors of eight lanes.
func mandelAVX512(g *mandelGeom, py, pxStart, pxEnd int, out []uint32) uint64 {
	return mandelLanes(g, py, pxStart, pxEnd, out, mandelAVX512Pass)
}

func mandelAVX512Pass(g *mandelGeom, s *laneState, out []uint32) {
	m := int64(g.maxIter)
	for l := range 16 {
		s.fill(l, 0)
	}
	deadline := s.deadline(m, 16)
	four := archsimd.BroadcastFloat64x8(4)
	var zero archsimd.Float64x8
	ar := archsimd.LoadUint64x8((*[8]uint64)(s.zr[0:8])).AsFloat64x8()
	ai := archsimd.LoadUint64x8((*[8]uint64)(s.zi[0:8])).AsFloat64x8()
	acr := archsimd.LoadUint64x8((*[8]uint64)(s.cr[0:8])).AsFloat64x8()
	aci := archsimd.LoadUint64x8((*[8]uint64)(s.ci[0:8])).AsFloat64x8()
	br := archsimd.LoadUint64x8((*[8]uint64)(s.zr[8:16])).AsFloat64x8()
	bi := archsimd.LoadUint64x8((*[8]uint64)(s.zi[8:16])).AsFloat64x8()
	bcr := archsimd.LoadUint64x8((*[8]uint64)(s.cr[8:16])).AsFloat64x8()
	bci := archsimd.LoadUint64x8((*[8]uint64)(s.ci[8:16])).AsFloat64x8()
	for t := int64(0); ; {
		ar2, ai2 := ar.Mul(ar), ai.Mul(ai)
		br2, bi2 := br.Mul(br), bi.Mul(bi)
		ae := ar2.Add(ai2).Greater(four)
		be := br2.Add(bi2).Greater(four)
		if ae.Or(be).ToBits() != 0 || t == deadline {
			ab, bb := ae.ToBits(), be.ToBits()
			if t != deadline && s.next+bits.OnesCount8(ab)+bits.OnesCount8(bb) <= s.n {
				// As in mandelAVX2Pass: each escaped lane gets the next pixel in registers.
				acr = s.refill8(acr, ab, 0, t, out)
				bcr = s.refill8(bcr, bb, 8, t, out)
				ar, ai, ar2, ai2 = zero.Merge(ar, ae), zero.Merge(ai, ae), zero.Merge(ar2, ae), zero.Merge(ai2, ae)
				br, bi, br2, bi2 = zero.Merge(br, be), zero.Merge(bi, be), zero.Merge(br2, be), zero.Merge(bi2, be)
			} else {
				ar.AsUint64x8().Store((*[8]uint64)(s.zr[0:8]))
				ai.AsUint64x8().Store((*[8]uint64)(s.zi[0:8]))
				br.AsUint64x8().Store((*[8]uint64)(s.zr[8:16]))
				bi.AsUint64x8().Store((*[8]uint64)(s.zi[8:16]))
				s.settle(0, 8, ab, t, m, out)
				s.settle(8, 8, bb, t, m, out)
				if s.active == 0 {
					archsimd.ClearAVXUpperBits()
					return
				}
				deadline = s.deadline(m, 16)
				ar = archsimd.LoadUint64x8((*[8]uint64)(s.zr[0:8])).AsFloat64x8()
				ai = archsimd.LoadUint64x8((*[8]uint64)(s.zi[0:8])).AsFloat64x8()
				acr = archsimd.LoadUint64x8((*[8]uint64)(s.cr[0:8])).AsFloat64x8()
				aci = archsimd.LoadUint64x8((*[8]uint64)(s.ci[0:8])).AsFloat64x8()
				br = archsimd.LoadUint64x8((*[8]uint64)(s.zr[8:16])).AsFloat64x8()
				bi = archsimd.LoadUint64x8((*[8]uint64)(s.zi[8:16])).AsFloat64x8()
				bcr = archsimd.LoadUint64x8((*[8]uint64)(s.cr[8:16])).AsFloat64x8()
				bci = archsimd.LoadUint64x8((*[8]uint64)(s.ci[8:16])).AsFloat64x8()
				continue // refilled lanes must compute their own squares first
			}
		}
		at := ar.Mul(ai)
		ai = at.Add(at).Add(aci)
		ar = ar2.Sub(ai2).Add(acr)
		bt := br.Mul(bi)
		bi = bt.Add(bt).Add(bci)
		br = br2.Sub(bi2).Add(bcr)
		t++
	}
}
