package child

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
)

// slowModule is a module whose hydra_map spins iters times per call, whatever its items:
//
//	(func (export "hydra_map") (param i64 i64) (result i64) (local i64)
//	  (loop (br_if 0 (i64.lt_u (local.tee 2 (i64.add (local.get 2) (i64.const 1))) (i64.const iters))))
//	  (local.get 2))
func slowModule(iters int64) []byte {
	body := []byte{0x01, 0x01, 0x7e, 0x03, 0x40, 0x20, 0x02, 0x42, 0x01, 0x7c, 0x22, 0x02, 0x42}
	body = appendSLEB(body, iters)
	body = append(body, 0x54, 0x0d, 0x00, 0x0b, 0x20, 0x02, 0x0b)
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7e, 0x7e, 0x01, 0x7e) // type (i64 i64) → i64
	b = append(b, 0x03, 0x02, 0x01, 0x00)                               // one function of it
	b = append(b, 0x07, 0x0d, 0x01, 0x09)                               // export "hydra_map"
	b = append(b, "hydra_map"...)
	b = append(b, 0x00, 0x00)
	code := append([]byte{0x01}, byte(len(body)))
	code = append(code, body...)
	b = append(b, 0x0a, byte(len(code)))
	return append(b, code...)
}

// appendSLEB appends v as a signed LEB128 (WebAssembly's i64.const immediate).
func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// TestWasmStopDeadlineIsNoModuleFault: a stop (an owner's pause, a cancelled lease) lets a
// WebAssembly task's calls in flight finish, and a call may take up to the call deadline
// (docs/wasm.md: 60 s). The runner killed the child once stopTimeout (30 s) had passed since
// the stop and reported a module fault ("a module call that never returns"): a module whose
// calls take 30–60 s, well within its limits, or a child starved by the owner who made the node
// pause, failed a chunk as the module's doing at every pause, and its job after three nodes.
// Here the calls take about a second and stopTimeout is cut to a millisecond: the task fails,
// as the node's failure (the lease goes back), not as the module's.
func TestWasmStopDeadlineIsNoModuleFault(t *testing.T) {
	code := slowModule(1_500_000_000)
	store := t.TempDir()
	sha := wasm.Hash(code)
	if err := os.WriteFile(filepath.Join(store, sha), code, 0o600); err != nil {
		t.Fatal(err)
	}
	old := stopTimeout
	stopTimeout = time.Millisecond
	t.Cleanup(func() { stopTimeout = old })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: []string{childEnv + "=child", EnvWasmModules + "=" + store, EnvWasmCache + "=" + t.TempDir()},
		CPUs: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	full := compute.Range{Start: 0, End: 100}
	ch := runUntilProgress(t, r, context.Background(), wasmTask(1, sha, 100, compute.ReduceSum, "", full), nil)
	r.StopTask() // the next call is in flight: it started as the first ended
	o := waitOutcome(t, ch)
	var mf *ModuleFault
	if o.err == nil {
		t.Fatalf("stop with a call in flight past the stop deadline returned %s, want the kill's error", o.res.Done)
	}
	if errors.As(o.err, &mf) || errors.Is(o.err, wasm.ErrTimeout) {
		t.Fatalf("stop deadline: %v, a module fault; want the node's failure", o.err)
	}
	// The next task runs on a new child.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	res, err := r.Run(ctx2, wasmTask(2, sha, 100, compute.ReduceSum, "", compute.Range{Start: 0, End: 1}), nil)
	if err != nil || res.Done.Len() != 1 {
		t.Fatalf("after the kill: %v %v", res.Done, err)
	}
}
