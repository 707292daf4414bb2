//go:build goexperiment.simd && amd64

package compute

import "simd/archsimd"

// The vector kernels. Each computes exactly the reference of docs/design.md §4: vector integer
// arithmetic wraps like uint64, and vector float multiply and add round each lane on its own (no
// fused multiply-add is ever requested), so every lane gives the scalar bits. A self-check
// against the portable kernel runs before one is chosen (kernel.go).

func init() {
	archImpls = func() []kernelImpl {
		var ks []kernelImpl
		if archsimd.X86.AVX512() {
			ks = append(ks, kernelImpl{name: "avx512", pi: piAVX512, mandel: mandelAVX512})
		}
		if archsimd.X86.AVX2() {
			ks = append(ks, kernelImpl{name: "avx2", pi: piAVX2, mandel: mandelAVX2})
			// Three interleaved vectors measured slower than two here (register pressure: AVX2
			// has 16 YMM registers); kept as a verified alternative for other cores.
			ks = append(ks, kernelImpl{name: "avx2x3", pi: piAVX2, mandel: mandelAVX2x3})
		}
		return ks
	}
}

// mulConst4 multiplies each 64-bit lane by the constant c = cHi·2³² + cLo, modulo 2⁶⁴, from
// 32×32→64-bit multiplies (AVX2 has no 64-bit lane multiply):
// a·c = aLo·cLo + ((aHi·cLo + aLo·cHi) << 32).
func mulConst4(a archsimd.Uint64x4, cLo, cHi archsimd.Uint32x8, s32 archsimd.Uint64x4) archsimd.Uint64x4 {
	a32 := a.AsUint32x8()
	lo := a32.MulEvenWiden(cLo)
	cross := a.ShiftRight(s32).AsUint32x8().MulEvenWiden(cLo).Add(a32.MulEvenWiden(cHi))
	return lo.Add(cross.ShiftLeft(s32))
}

// Shift counts are vectors (VPSRLVQ) rather than constants: for a constant count the Go 1.26
// compiler moves the count into an XMM register with a legacy-SSE MOVQ inside the loop, and an
// SSE instruction while the upper halves of the YMM registers are dirty costs hundreds of cycles
// on some CPUs (measured: 50× slower here). For the same reason every vector function ends with
// ClearAVXUpperBits before scalar code runs.
type shifts4 struct{ s1, s27, s30, s31, s32, s33 archsimd.Uint64x4 }

func newShifts4() shifts4 {
	return shifts4{
		archsimd.BroadcastUint64x4(1), archsimd.BroadcastUint64x4(27), archsimd.BroadcastUint64x4(30),
		archsimd.BroadcastUint64x4(31), archsimd.BroadcastUint64x4(32), archsimd.BroadcastUint64x4(33),
	}
}

// piAVX2 runs two vectors of four samples each per step.
func piAVX2(seed, start, end uint64) uint64 {
	if end-start < 64 || end <= start {
		return piPortable(seed, start, end)
	}
	g := uint64(splitGamma)
	m1lo := archsimd.BroadcastUint64x4(splitMul1 & 0xffffffff).AsUint32x8()
	m1hi := archsimd.BroadcastUint64x4(splitMul1 >> 32).AsUint32x8()
	m2lo := archsimd.BroadcastUint64x4(splitMul2 & 0xffffffff).AsUint32x8()
	m2hi := archsimd.BroadcastUint64x4(splitMul2 >> 32).AsUint32x8()
	low31 := archsimd.BroadcastUint64x4(0xfffffffe)
	limit := archsimd.BroadcastInt64x4(piLimit)
	step := archsimd.BroadcastUint64x4(8 * g)
	z0 := seed + (start+1)*g
	za := archsimd.LoadUint64x4(&[4]uint64{z0, z0 + g, z0 + 2*g, z0 + 3*g})
	zb := za.Add(archsimd.BroadcastUint64x4(4 * g))
	sh := newShifts4()
	var acc archsimd.Int64x4
	n := (end - start) / 8
	for range n {
		ra, rb := za, zb
		ra = mulConst4(ra.Xor(ra.ShiftRight(sh.s30)), m1lo, m1hi, sh.s32)
		rb = mulConst4(rb.Xor(rb.ShiftRight(sh.s30)), m1lo, m1hi, sh.s32)
		ra = mulConst4(ra.Xor(ra.ShiftRight(sh.s27)), m2lo, m2hi, sh.s32)
		rb = mulConst4(rb.Xor(rb.ShiftRight(sh.s27)), m2lo, m2hi, sh.s32)
		ra = ra.Xor(ra.ShiftRight(sh.s31))
		rb = rb.Xor(rb.ShiftRight(sh.s31))
		// x = (low 32 bits) >> 1 = (r & 0xfffffffe) >> 1 and y = r >> 33, both in the low half
		// of the lane, so one 32×32 multiply squares each.
		xa := ra.And(low31).ShiftRight(sh.s1).AsUint32x8()
		ya := ra.ShiftRight(sh.s33).AsUint32x8()
		xb := rb.And(low31).ShiftRight(sh.s1).AsUint32x8()
		yb := rb.ShiftRight(sh.s33).AsUint32x8()
		sa := xa.MulEvenWiden(xa).Add(ya.MulEvenWiden(ya)).AsInt64x4()
		sb := xb.MulEvenWiden(xb).Add(yb.MulEvenWiden(yb)).AsInt64x4()
		// A true compare lane is −1: subtracting it counts a hit.
		acc = acc.Sub(limit.Greater(sa).ToInt64x4()).Sub(limit.Greater(sb).ToInt64x4())
		za = za.Add(step)
		zb = zb.Add(step)
	}
	var lanes [4]int64
	acc.Store(&lanes)
	archsimd.ClearAVXUpperBits()
	hits := uint64(lanes[0] + lanes[1] + lanes[2] + lanes[3])
	done := start + n*8
	return hits + piPortable(seed, done, end)
}

// piAVX512 runs two vectors of eight samples each per step, with the native 64-bit lane
// multiply of AVX-512DQ.
func piAVX512(seed, start, end uint64) uint64 {
	if end-start < 128 || end <= start {
		return piPortable(seed, start, end)
	}
	g := uint64(splitGamma)
	m1 := archsimd.BroadcastUint64x8(splitMul1)
	m2 := archsimd.BroadcastUint64x8(splitMul2)
	low31 := archsimd.BroadcastUint64x8(0xfffffffe)
	limit := archsimd.BroadcastUint64x8(piLimit)
	step := archsimd.BroadcastUint64x8(16 * g)
	z0 := seed + (start+1)*g
	var init [8]uint64
	for i := range init {
		init[i] = z0 + uint64(i)*g
	}
	za := archsimd.LoadUint64x8(&init)
	zb := za.Add(archsimd.BroadcastUint64x8(8 * g))
	s1, s27, s30 := archsimd.BroadcastUint64x8(1), archsimd.BroadcastUint64x8(27), archsimd.BroadcastUint64x8(30)
	s31, s33 := archsimd.BroadcastUint64x8(31), archsimd.BroadcastUint64x8(33)
	var acc archsimd.Int64x8
	n := (end - start) / 16
	for range n {
		ra, rb := za, zb
		ra = ra.Xor(ra.ShiftRight(s30)).Mul(m1)
		rb = rb.Xor(rb.ShiftRight(s30)).Mul(m1)
		ra = ra.Xor(ra.ShiftRight(s27)).Mul(m2)
		rb = rb.Xor(rb.ShiftRight(s27)).Mul(m2)
		ra = ra.Xor(ra.ShiftRight(s31))
		rb = rb.Xor(rb.ShiftRight(s31))
		xa := ra.And(low31).ShiftRight(s1)
		ya := ra.ShiftRight(s33)
		xb := rb.And(low31).ShiftRight(s1)
		yb := rb.ShiftRight(s33)
		sa := xa.Mul(xa).Add(ya.Mul(ya))
		sb := xb.Mul(xb).Add(yb.Mul(yb))
		acc = acc.Sub(sa.Less(limit).ToInt64x8()).Sub(sb.Less(limit).ToInt64x8())
		za = za.Add(step)
		zb = zb.Add(step)
	}
	var lanes [8]int64
	acc.Store(&lanes)
	archsimd.ClearAVXUpperBits()
	var hits int64
	for _, v := range lanes {
		hits += v
	}
	done := start + n*16
	return uint64(hits) + piPortable(seed, done, end)
}
