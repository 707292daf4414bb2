//go:build goexperiment.simd && amd64

package compute

import (
	"simd/archsimd"
	"testing"
)

// TestSIMDPathChosen: on a CPU with the instructions, a GOEXPERIMENT=simd build runs a vector
// kernel, so scripts/test's SIMD step exercises the vector paths rather than the portable one
// again (every other test then compares them with the portable kernel and the references).
func TestSIMDPathChosen(t *testing.T) {
	got := names(impls())
	t.Logf("paths on this CPU: %v, in use: %s", got, KernelPath())
	want := map[string]bool{"portable": true}
	if archsimd.X86.AVX2() {
		want["avx2"] = true
	}
	if archsimd.X86.AVX512() {
		want["avx512"] = true
	}
	for name := range want {
		found := false
		for _, g := range got {
			found = found || g == name
		}
		if !found {
			t.Errorf("path %s missing on a CPU that supports it: %v", name, got)
		}
	}
	if len(want) > 1 && KernelPath() == "portable" {
		t.Errorf("the portable kernel runs on a CPU with vector paths %v (self-check failed?)", got)
	}
}
