package compute

import (
	"sync"
	"sync/atomic"
)

// Stop is polled by the kernels between blocks of about a few milliseconds of work; when it
// returns true they finish the block in hand and return the finished prefix. A nil Stop never
// stops. The parallel drivers call it from several goroutines at once, so it must be safe for
// concurrent use (an atomic load, as [StopFlag] gives, is the intended cost).
type Stop func() bool

// StopFlag adapts an atomic flag, the usual pause switch of the compute child process, to a [Stop].
func StopFlag(b *atomic.Bool) Stop {
	if b == nil {
		return nil
	}
	return b.Load
}

// kernelImpl is one implementation of both kernels. All implementations return the same bits;
// they differ only in speed and in the CPU features they need.
type kernelImpl struct {
	name string
	// pi returns the hits of samples [start, end) for seed.
	pi func(seed, start, end uint64) uint64
	// mandel fills out[0:pxEnd-pxStart] with the counts of pixels pxStart..pxEnd-1 of row py
	// and returns the number of iterations done (used to size blocks, not part of the result).
	mandel func(g *mandelGeom, py, pxStart, pxEnd int, out []uint32) uint64
}

var portableImpl = kernelImpl{name: "portable", pi: piPortable, mandel: mandelPortable}

// active is the implementation chosen at start-up; archImpls (set by the build-tagged simd
// file) lists candidate fast paths, best first, each already filtered by CPU features.
var (
	activeOnce sync.Once
	active     kernelImpl
	archImpls  func() []kernelImpl
)

// impls lists every implementation usable on this CPU, portable last. Tests use it to check that
// every path gives the same bits.
func impls() []kernelImpl {
	var out []kernelImpl
	if archImpls != nil {
		out = append(out, archImpls()...)
	}
	return append(out, portableImpl)
}

// kernel returns the implementation in use: the first fast path that passes a self-check
// against the portable kernel on a few thousand samples and pixels (a guard against a vector
// path that is wrong on a CPU it was never tested on: a wrong bit would break every result).
func kernel() *kernelImpl {
	activeOnce.Do(func() {
		active = portableImpl
		for _, k := range impls() {
			if k.name == portableImpl.name || selfCheck(k) {
				active = k
				return
			}
		}
	})
	return &active
}

// selfCheck compares k with the portable kernel on a few awkward inputs.
func selfCheck(k kernelImpl) bool {
	for _, seed := range []uint64{0, 7, 0xffffffffffffffff} {
		for _, r := range [][2]uint64{{0, 1000}, {3, 1003}, {1<<40 - 5, 1<<40 + 1021}} {
			if k.pi(seed, r[0], r[1]) != piPortable(seed, r[0], r[1]) {
				return false
			}
		}
	}
	p := MandelParams{Width: 37, Height: 9, CenterX: -0.75, CenterY: 0.1, Span: 3, MaxIter: 300}
	g := newMandelGeom(p)
	a, b := make([]uint32, p.Width), make([]uint32, p.Width)
	for py := 0; py < p.Height; py++ {
		k.mandel(&g, py, 0, p.Width, a)
		mandelPortable(&g, py, 0, p.Width, b)
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
	}
	return true
}

// KernelPath names the kernel implementation this process runs: "avx512", "avx2" or "portable".
// Nodes report it so a user can see why one machine is faster than another.
func KernelPath() string { return kernel().name }
