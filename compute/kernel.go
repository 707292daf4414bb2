package compute

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

// active is the implementation chosen at start-up (its pi and mandel may come from different
// implementations: each kernel gets the path measured fastest for it); archImpls (set by the
// build-tagged simd file) lists candidate fast paths, best first, each already filtered by CPU
// features.
var (
	activeOnce sync.Once
	active     kernelImpl
	report     string
	archImpls  func() []kernelImpl
)

// KernelsEnv is the environment variable that hands a choice of kernels to a process, in
// KernelPath's format: the node measures once and passes its choice to every compute child it
// starts, so a child (restarted whenever the node was idle for a while) does not measure again.
// A value naming a path this CPU cannot run, or that fails its self-check, is ignored.
const KernelsEnv = "HYDRA_KERNELS"

// impls lists every implementation usable on this CPU, portable last. Tests use it to check that
// every path gives the same bits.
func impls() []kernelImpl {
	var out []kernelImpl
	if archImpls != nil {
		out = append(out, archImpls()...)
	}
	return append(out, portableImpl)
}

// kernel returns the implementation in use. Every fast path must first pass a self-check
// against the portable kernel on a few thousand samples and pixels (a guard against a vector
// path that is wrong on a CPU it was never tested on: a wrong bit would break every result).
// Among those that pass, each kernel takes the one a short calibration measures fastest on this
// machine (about 0.1 s once per process; see calibrate), or the one KernelsEnv names: the widest
// vectors are not always the fastest (on one AVX-512 machine the AVX2 Mandelbrot path was 8 %
// faster than the AVX-512 one).
func kernel() *kernelImpl {
	activeOnce.Do(func() {
		var ok []kernelImpl
		for _, k := range impls() {
			if k.name == portableImpl.name || selfCheck(k) {
				ok = append(ok, k)
			}
		}
		pi, mandel, found := fromEnv(ok, os.Getenv(KernelsEnv))
		if found {
			report = "from " + KernelsEnv
		} else {
			pi, mandel, report = calibrate(ok)
		}
		active = kernelImpl{name: pathName(pi.name, mandel.name), pi: pi.pi, mandel: mandel.mandel}
	})
	return &active
}

// pathName is KernelPath's value for the two choices.
func pathName(pi, mandel string) string {
	if pi == mandel {
		return pi
	}
	return "pi=" + pi + ",mandelbrot=" + mandel
}

// fromEnv parses a KernelPath value ("avx2", or "pi=avx512,mandelbrot=avx2") against the
// usable implementations.
func fromEnv(ok []kernelImpl, v string) (pi, mandel kernelImpl, found bool) {
	if v == "" || len(v) > 64 {
		return pi, mandel, false
	}
	find := func(name string) (kernelImpl, bool) {
		for _, k := range ok {
			if k.name == name {
				return k, true
			}
		}
		return kernelImpl{}, false
	}
	pn, mn := v, v
	if strings.Contains(v, "=") {
		pn, mn = "", ""
		for _, f := range strings.Split(v, ",") {
			key, val, _ := strings.Cut(f, "=")
			switch key {
			case "pi":
				pn = val
			case "mandelbrot":
				mn = val
			}
		}
	}
	p, ok1 := find(pn)
	m, ok2 := find(mn)
	return p, m, ok1 && ok2
}

// calibrate times each usable implementation on a fixed π block (2¹⁹ samples) and a fixed
// Mandelbrot strip (about a million iterations, inside and outside the set), five rounds
// interleaved, keeping each one's best time (the least disturbed by anything else running), and
// returns the fastest for each kernel (by a margin: see below) with a one-line report of the
// rates.
func calibrate(ok []kernelImpl) (pi, mandel kernelImpl, report string) {
	pi, mandel = ok[0], ok[0]
	if len(ok) == 1 {
		return pi, mandel, "only " + ok[0].name
	}
	const piN = 1 << 19
	p := MandelParams{Width: 256, Height: 4, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.004, MaxIter: 1000}
	g := newMandelGeom(p)
	out := make([]uint32, p.Width)
	bestPi := make([]time.Duration, len(ok))
	bestM := make([]time.Duration, len(ok))
	var iters uint64
	for round := range 5 {
		for i, k := range ok {
			t := time.Now()
			k.pi(uint64(round), 0, piN)
			if d := time.Since(t); bestPi[i] == 0 || d < bestPi[i] {
				bestPi[i] = d
			}
			t = time.Now()
			var n uint64
			for py := range p.Height {
				n += k.mandel(&g, py, 0, p.Width, out)
			}
			if d := time.Since(t); bestM[i] == 0 || d < bestM[i] {
				bestM[i] = d
			}
			iters = n
		}
	}
	var pr, mr []string
	bp, bm := 0, 0
	// ok is ordered widest vectors first: a later path must be 5 % faster to be taken, so
	// noise does not flip a tie (nor pick the portable kernel over a vector path it matches).
	for i, k := range ok {
		if bestPi[i] < bestPi[bp]*95/100 {
			bp, pi = i, k
		}
		if bestM[i] < bestM[bm]*95/100 {
			bm, mandel = i, k
		}
		pr = append(pr, fmt.Sprintf("%s %.2f", k.name, piN/bestPi[i].Seconds()/1e9))
		mr = append(mr, fmt.Sprintf("%s %.2f", k.name, float64(iters)/bestM[i].Seconds()/1e9))
	}
	return pi, mandel, fmt.Sprintf("measured: pi G samples/s %s; mandelbrot G iterations/s %s", strings.Join(pr, ", "), strings.Join(mr, ", "))
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

// KernelPath names the kernel implementations this process runs: "avx512", "avx2", "avx2x3" or
// "portable" when both kernels run the same path, else "pi=avx512,mandelbrot=avx2". Nodes
// report it so a user can see why one machine is faster than another; KernelsEnv takes it.
func KernelPath() string { return kernel().name }

// KernelReport says how KernelPath was chosen (the calibration's rates per path, or that
// KernelsEnv named it), for the node's log.
func KernelReport() string {
	kernel()
	return report
}

// runWorkers runs work on workers goroutines and waits for them all (on the caller's goroutine
// when there is one worker).
func runWorkers(workers int, work func()) {
	if workers == 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
}
