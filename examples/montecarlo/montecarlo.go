// Command montecarlo is a Hydra WebAssembly example: the Monte-Carlo price of a European call
// option under geometric Brownian motion. Item i is one simulated path, drawn from a counter-based
// generator (the same numbers whichever node computes item i); hydra_map returns the sum of the
// discounted payoffs of its items in millionths, so the job's `sum` divided by items·10⁶ is the
// price. Built natively it is the same code as a command, the reference for tests.
//
// Every float product is rounded on its own (explicit float64 conversions forbid fused
// multiply-add) and exp and log are written out here rather than taken from package math (whose
// assembly versions differ by architecture), so the native reference gives the same bits as the
// module on amd64 and arm64.
package main

import (
	"math"
	"strconv"
	"strings"
)

// Option and model parameters; params like {"s0":100,"strike":110,"r":0.05,"sigma":0.2,"t":1,"seed":7}.
var (
	s0, strike, rate, sigma, years = 100.0, 100.0, 0.05, 0.2, 1.0
	seed                           uint64
)

// setParams reads the numeric fields it knows from a flat JSON object (a tiny parser keeps the
// module small; unknown fields are ignored).
func setParams(p string) {
	for _, f := range strings.Split(strings.Trim(strings.TrimSpace(p), "{}"), ",") {
		kv := strings.SplitN(f, ":", 2)
		if len(kv) != 2 {
			continue
		}
		key := strings.Trim(strings.TrimSpace(kv[0]), `"`)
		val := strings.TrimSpace(kv[1])
		if key == "seed" {
			seed, _ = strconv.ParseUint(val, 10, 64)
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch key {
		case "s0":
			s0 = v
		case "strike":
			strike = v
		case "r":
			rate = v
		case "sigma":
			sigma = v
		case "t":
			years = v
		}
	}
}

// splitmix64 is the counter-based generator: item i's numbers depend on seed and i only.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// uniform maps 53 random bits to (0, 1).
func uniform(x uint64) float64 { return (float64(x>>11) + 0.5) / (1 << 53) }

// payoffs returns the sum, in millionths, of the discounted payoffs of paths [lo, hi).
func payoffs(lo, hi uint64) uint64 {
	drift := float64(float64(rate-float64(0.5*float64(sigma*sigma))) * years)
	vol := float64(sigma * math.Sqrt(years))
	disc := exp(float64(-rate * years))
	var sum uint64
	for i := lo; i < hi; i++ {
		h := splitmix64(seed ^ splitmix64(i))
		u1, u2 := uniform(h), uniform(splitmix64(h))
		// Box–Muller, cosine branch: z is standard normal.
		z := float64(math.Sqrt(float64(-2*log(u1))) * cos2pi(u2))
		st := float64(s0 * exp(float64(drift+float64(vol*z))))
		if st > strike {
			sum += uint64(float64(float64(float64(st-strike)*disc)*1e6) + 0.5)
		}
	}
	return sum
}

// exp is Go's portable math.Exp algorithm (FreeBSD's e_exp.c) with every product rounded.
func exp(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		log2e = 1.44269504088896338700e+00
	)
	switch {
	case x > 7.09782712893383973096e+02:
		return math.Inf(1)
	case x < -7.45133219101941108420e+02:
		return 0
	}
	var k int
	switch {
	case x < 0:
		k = int(float64(log2e*x) - 0.5)
	default:
		k = int(float64(log2e*x) + 0.5)
	}
	hi := x - float64(float64(k)*ln2Hi)
	lo := float64(float64(k) * ln2Lo)
	r := hi - lo
	t := float64(r * r)
	c := r - float64(t*(1.66666666666666657415e-01+float64(t*(-2.77777777770155933842e-03+float64(t*(6.61375632143793436117e-05+float64(t*(-1.65339022054652515390e-06+float64(t*4.13813679705723846039e-08)))))))))
	y := 1 - ((lo - float64(float64(r*c)/(2-c))) - hi)
	return math.Ldexp(y, k)
}

// log is Go's portable math.Log algorithm (FreeBSD's e_log.c) with every product rounded.
func log(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		L1    = 6.666666666666735130e-01
		L2    = 3.999999999940941908e-01
		L3    = 2.857142874366239149e-01
		L4    = 2.222219843214978396e-01
		L5    = 1.818357216161805012e-01
		L6    = 1.531383769920937332e-01
		L7    = 1.479819860511658591e-01
	)
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * float64(L1+float64(s4*float64(L3+float64(s4*float64(L5+float64(s4*L7)))))))
	t2 := float64(s4 * float64(L2+float64(s4*float64(L4+float64(s4*L6)))))
	R := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+R)) + float64(k*ln2Lo))) - f)
}

// cos2pi is cos(2πu) for u in (0, 1) by a rounded Taylor series on the reduced argument: not
// libm-accurate to the last bit, but the same bits everywhere, and plenty for sampling.
func cos2pi(u float64) float64 {
	// Reduce to a in [-π, π], then use cos(a) = 1 - a²/2! + … to a¹⁶ term after halving twice.
	a := float64(float64(u-0.5) * (2 * math.Pi)) // cos(2πu) = -cos(2π(u-½))
	a = float64(a * 0.25)
	x2 := float64(a * a)
	c, term := 1.0, 1.0
	for n := 1; n <= 10; n++ {
		term = float64(float64(-term*x2) / float64(float64(2*n-1)*float64(2*n)))
		c += term
	}
	// cos 4a = 8cos⁴a − 8cos²a + 1
	c2 := float64(c * c)
	c = float64(float64(8*c2)*c2) - float64(8*c2) + 1
	return -c
}
