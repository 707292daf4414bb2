package main

import (
	"math"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/examples/internal/extest"
)

const params = `{"s0":100,"strike":110,"r":0.03,"sigma":0.25,"t":2,"seed":7}`

// TestModuleMatchesNative: montecarlo.wasm gives the native sum bit for bit, and the price is
// near Black–Scholes.
func TestModuleMatchesNative(t *testing.T) {
	m := extest.Module(t, "montecarlo.wasm")
	setParams(params)
	const n = 400_000
	want := payoffs(0, n)
	if got := extest.Run(t, m, compute.ReduceSum, params, 0, n, 3); got != want {
		t.Fatalf("module %d, native %d", got, want)
	}
	price := float64(want) / n / 1e6
	if bs := blackScholes(100, 110, 0.03, 0.25, 2); math.Abs(price-bs) > 0.1 {
		t.Fatalf("price %.4f, Black–Scholes %.4f", price, bs)
	}
	for _, x := range []float64{-700, -3.5, -1e-9, 0, 1e-300, 0.5, 1, 2.7, 88} {
		if r := math.Abs(exp(x)-math.Exp(x)) / math.Exp(x); r > 1e-15 {
			t.Errorf("exp(%g) off by %g", x, r)
		}
	}
	for _, x := range []float64{1e-300, 1e-9, 0.3, 1, 2, 1e10} {
		if d := math.Abs(log(x) - math.Log(x)); d > 1e-15*math.Max(1, math.Abs(math.Log(x))) {
			t.Errorf("log(%g) off by %g", x, d)
		}
	}
	for u := 0.001; u < 1; u += 0.01 {
		if d := math.Abs(cos2pi(u) - math.Cos(2*math.Pi*u)); d > 1e-12 {
			t.Errorf("cos2pi(%g) off by %g", u, d)
		}
	}
}

func blackScholes(s, k, r, sigma, t float64) float64 {
	d1 := (math.Log(s/k) + (r+sigma*sigma/2)*t) / (sigma * math.Sqrt(t))
	d2 := d1 - sigma*math.Sqrt(t)
	n := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	return s*n(d1) - k*math.Exp(-r*t)*n(d2)
}

// BenchmarkMonteCarlo compares one core of wazero with native Go on the same paths.
func BenchmarkMonteCarlo(b *testing.B) {
	const n = 200_000
	setParams(params)
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			payoffs(0, n)
		}
	})
	b.Run("wazero", func(b *testing.B) {
		m := extest.Module(b, "montecarlo.wasm")
		for b.Loop() {
			extest.Run(b, m, compute.ReduceSum, params, 0, n, 1)
		}
	})
}

// TestSameBitsEverywhere: the module's sum over 100,000 paths is the value recorded on
// linux/amd64, on whatever machine runs this test (node TestSystem_WasmSameBitsOnArm64 runs it
// on arm64 under qemu; the floating-point path is the one that could differ).
func TestSameBitsEverywhere(t *testing.T) {
	m := extest.Module(t, "montecarlo.wasm")
	if got := extest.Run(t, m, compute.ReduceSum, params, 0, 100_000, 2); got != 1255915903117 {
		t.Fatalf("module %d, recorded on amd64 1255915903117", got)
	}
}
