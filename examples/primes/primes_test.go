package main

import (
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/examples/internal/extest"
)

// TestModuleMatchesNative: primes.wasm gives the native count, with and without params, and
// across the 2³² switch of the Miller–Rabin bases.
func TestModuleMatchesNative(t *testing.T) {
	m := extest.Module(t, "primes.wasm")
	for _, c := range []struct {
		params string
		lo, hi uint64
	}{{"", 0, 300_000}, {`{"k":2}`, 0, 300_000}, {`{"k": 6}`, 1<<32 - 20_000, 1<<32 + 20_000}} {
		k = 0
		setParams(c.params)
		want := count(c.lo, c.hi)
		if got := extest.Run(t, m, compute.ReduceSum, c.params, c.lo, c.hi, 3); got != want {
			t.Errorf("params %q [%d,%d): module %d, native %d", c.params, c.lo, c.hi, got, want)
		}
	}
	k = 0
	if count(0, 1_000_000) != 78498 {
		t.Fatal("π(10⁶) is not 78498")
	}
}

// BenchmarkPrimes compares one core of wazero with native Go on the same items.
func BenchmarkPrimes(b *testing.B) {
	const n = 200_000
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			count(1<<32, 1<<32+n)
		}
	})
	b.Run("wazero", func(b *testing.B) {
		m := extest.Module(b, "primes.wasm")
		for b.Loop() {
			extest.Run(b, m, compute.ReduceSum, "", 1<<32, 1<<32+n, 1)
		}
	})
}

// TestSameBitsEverywhere: the module's count of twin primes below 10⁶ is the recorded one on
// whatever machine runs this test (node TestSystem_WasmSameBitsOnArm64: arm64 under qemu).
func TestSameBitsEverywhere(t *testing.T) {
	m := extest.Module(t, "primes.wasm")
	if got := extest.Run(t, m, compute.ReduceSum, `{"k":2}`, 0, 1_000_000, 2); got != 8169 {
		t.Fatalf("module %d, recorded on amd64 8169", got)
	}
}
