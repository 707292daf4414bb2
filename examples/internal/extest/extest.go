// Package extest runs an example module under Hydra's WebAssembly engine for the examples' tests
// and benchmarks, which compare it with the same Go code compiled natively.
package extest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
)

// Module compiles the module file path (relative to the test's package) on a fresh engine. The
// machine code is cached across test runs in the temporary directory: the race detector slows
// wazero's compiler about tenfold, 20 s for a Go module.
func Module(tb testing.TB, path string) *wasm.Module {
	tb.Helper()
	code, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("hydra-wasm-test-cache-%d", os.Getuid()))
	e, err := wasm.NewEngine(context.Background(), wasm.Config{Uninterruptible: true, CacheDir: cache})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close(context.Background()) })
	m, err := e.Compile(context.Background(), code)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// Run computes items [lo, hi) on workers instances and returns the reduced value.
func Run(tb testing.TB, m *wasm.Module, reduce compute.Reduce, params string, lo, hi uint64, workers int) uint64 {
	tb.Helper()
	res, err := m.Run(context.Background(), wasm.Run{Reduce: reduce, Params: []byte(params), Start: lo, End: hi, Workers: workers})
	if err != nil {
		tb.Fatal(err)
	}
	if res.Done != hi-lo {
		tb.Fatalf("finished %d of %d items", res.Done, hi-lo)
	}
	return res.Value
}
