package compute

import (
	"sync/atomic"
)

// SplitMix64 constants of docs/design.md §4.
const (
	splitGamma = 0x9e3779b97f4a7c15
	splitMul1  = 0xbf58476d1ce4e5b9
	splitMul2  = 0x94d049bb133111eb
	piLimit    = 1 << 62
)

// piMaxBlock is the most samples a π worker computes between two polls of its Stop: about 6 ms
// for the portable kernel on a 2020s x86 core and 1 ms for the vector ones.
const piMaxBlock = 1 << 21

// splitMix is the SplitMix64 output function (mix) of docs/design.md §4.
func splitMix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * splitMul1
	z = (z ^ (z >> 27)) * splitMul2
	return z ^ (z >> 31)
}

// piHit returns 1 if the random word r is a hit: x = low 32 bits >> 1, y = high 32 bits >> 1,
// hit iff x² + y² < 2⁶². Both squares are below 2⁶², so the sum is below 2⁶³ and
// (sum − 2⁶²) has its top bit set exactly when sum < 2⁶²: branch-free.
func piHit(r uint64) uint64 {
	x := (r & 0xffffffff) >> 1
	y := r >> 33
	return (x*x + y*y - piLimit) >> 63
}

// piPortable is the scalar reference: four independent samples per step so the multiplies of
// different samples overlap.
func piPortable(seed, start, end uint64) uint64 {
	if end <= start {
		return 0
	}
	z := seed + (start+1)*splitGamma
	n := end - start
	var h0, h1, h2, h3 uint64
	g := uint64(splitGamma) // a variable, so multiples wrap instead of overflowing a constant
	for ; n >= 4; n -= 4 {
		h0 += piHit(splitMix(z))
		h1 += piHit(splitMix(z + g))
		h2 += piHit(splitMix(z + 2*g))
		h3 += piHit(splitMix(z + 3*g))
		z += 4 * g
	}
	for ; n > 0; n-- {
		h0 += piHit(splitMix(z))
		z += splitGamma
	}
	return h0 + h1 + h2 + h3
}

// PiHits returns the number of hits among samples [start, end) of the π job with this seed
// (docs/design.md §4), on the calling goroutine with the fastest kernel this CPU has. Hits of
// disjoint ranges add up to the hits of their union, whatever the chunking. An empty or
// reversed range has no hits.
func PiHits(seed, start, end uint64) uint64 {
	return kernel().pi(seed, start, end)
}

// PiHitsParallel computes samples [start, end) on up to workers goroutines (the compute child
// sets GOMAXPROCS to the cores it may use and passes the same number), polling stop between
// blocks of at most piMaxBlock samples. It returns the hits of the finished prefix
// [start, start+done): when stop fires, work already finished is kept and nothing after the
// prefix is counted, so the caller can resume at start+done and the totals stay exact.
func PiHitsParallel(seed, start, end uint64, workers int, stop Stop) (hits, done uint64) {
	if end <= start {
		return 0, 0
	}
	n := end - start
	if workers < 1 {
		workers = 1
	}
	bs := n / uint64(workers*8)
	bs = max(min(bs, piMaxBlock), 1<<12)
	nblocks := (n + bs - 1) / bs
	if uint64(workers) > nblocks {
		workers = int(nblocks)
	}
	k := kernel()
	var next atomic.Uint64
	var total atomic.Uint64
	work := func() {
		var h uint64
		for {
			// Check, then take: every block taken is finished, so the finished blocks are
			// exactly 0..next-1 — a prefix.
			if stop != nil && stop() {
				break
			}
			b := next.Add(1) - 1
			if b >= nblocks {
				break
			}
			s := start + b*bs
			e := min(s+bs, end)
			h += k.pi(seed, s, e)
		}
		total.Add(h)
	}
	runWorkers(workers, work)
	taken := min(next.Load(), nblocks)
	return total.Load(), min(taken*bs, n)
}
