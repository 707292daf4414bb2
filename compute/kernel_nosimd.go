//go:build !(goexperiment.simd && amd64)

package compute

// Without GOEXPERIMENT=simd on amd64 only the portable kernels exist; archImpls stays nil and
// KernelPath reports "portable". arm64 (NEON) and others fall back here until a path of their own.
