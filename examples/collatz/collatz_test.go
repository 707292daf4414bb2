package main

import (
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/examples/internal/extest"
)

// TestModuleMatchesNative: collatz.wasm (c/collatz.c) gives the Go reference's maximum; below 10⁶ the
// longest start is 837799 with 524 steps.
func TestModuleMatchesNative(t *testing.T) {
	m := extest.Module(t, "collatz.wasm")
	const n = 1_000_000
	want := best(0, n)
	if got := extest.Run(t, m, compute.ReduceMax, "", 0, n, 3); got != want {
		t.Fatalf("module %d, native %d", got, want)
	}
	if want&(1<<40-1) != 837799 || want>>40 != 524 {
		t.Fatalf("best start %d with %d steps", want&(1<<40-1), want>>40)
	}
}

// BenchmarkCollatz compares one core of wazero with native Go on the same items.
func BenchmarkCollatz(b *testing.B) {
	const n = 200_000
	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			best(0, n)
		}
	})
	b.Run("wazero", func(b *testing.B) {
		m := extest.Module(b, "collatz.wasm")
		for b.Loop() {
			extest.Run(b, m, compute.ReduceMax, "", 0, n, 1)
		}
	})
}

// TestSameBitsEverywhere: the module's maximum over 300,000 starts is the recorded one on
// whatever machine runs this test (node TestSystem_WasmSameBitsOnArm64: arm64 under qemu).
func TestSameBitsEverywhere(t *testing.T) {
	m := extest.Module(t, "collatz.wasm")
	if got := extest.Run(t, m, compute.ReduceMax, "", 0, 300_000, 2); got != 485984139707623 {
		t.Fatalf("module %d, recorded on amd64 485984139707623", got)
	}
}
