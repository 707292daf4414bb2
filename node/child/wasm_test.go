package child

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
)

// wasmStore copies test modules into a module store named by hash and returns their hashes.
func wasmStore(t testing.TB, names ...string) (dir string, sha map[string]string) {
	t.Helper()
	dir, sha = t.TempDir(), map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("../../compute/wasm/testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		sha[n] = wasm.Hash(b)
		if err := os.WriteFile(filepath.Join(dir, sha[n]), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, sha
}

func startWasmRunner(t *testing.T, mode, store string, extra ...string) *Runner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := append([]string{childEnv + "=" + mode, EnvWasmModules + "=" + store, EnvWasmCache + "=" + t.TempDir()}, extra...)
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: env, CPUs: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func wasmTask(id uint64, sha string, items uint64, r compute.Reduce, params string, rg compute.Range) Chunk {
	return Chunk{ID: id, Range: rg, Spec: compute.JobSpec{Kind: compute.KindWasm,
		Wasm: &compute.WasmParams{Module: sha, Items: items, Reduce: r, Params: params}}}
}

// TestWasmTasks: the child maps modules exactly (sum, concat with params); a trapping module
// and one allocating past the memory cap fail their task as the module's fault (ModuleFault),
// a missing module as the node's; a module stuck in a loop fails its task (the child notices from
// CPU time, or freezes at its next garbage collection and the parent notices the silence) and
// its child is replaced; the next task runs on a healthy child.
func TestWasmTasks(t *testing.T) {
	store, sha := wasmStore(t, "sum.wasm", "emit.wasm", "trap.wasm", "loop.wasm", "grow.wasm")
	r := startWasmRunner(t, "child", store, EnvWasmCallTimeout+"=1s")
	ctx := context.Background()
	rg := compute.Range{Start: 10, End: 2_000_010}
	res, err := r.Run(ctx, wasmTask(1, sha["sum.wasm"], 1e9, compute.ReduceSum, "", rg), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := compute.DecodeWasmPayload(res.Payload, compute.ReduceSum)
	if want := uint64(rg.End*(rg.End-1)/2 - rg.Start*(rg.Start-1)/2); err != nil || res.Done != rg || v != want {
		t.Fatalf("sum: %v %v %d, want %d", res.Done, err, v, want)
	}
	res, err = r.Run(ctx, wasmTask(2, sha["emit.wasm"], 100, compute.ReduceConcat, ";", compute.Range{Start: 2, End: 5}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, out, _ := compute.DecodeWasmPayload(res.Payload, compute.ReduceConcat); string(out) != "4;9;16;" {
		t.Fatalf("concat %q", out)
	}
	_, err = r.Run(ctx, wasmTask(3, sha["trap.wasm"], 1e6, compute.ReduceSum, "", compute.Range{Start: 0, End: 1e6}), nil)
	var mf *ModuleFault
	if !errors.As(err, &mf) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("trap: %v, want a module fault", err)
	}
	// Memory past the cap: memory.grow fails and the module traps, reported with its message
	// (not found stuck: growing to the cap costs no copying).
	_, err = r.Run(ctx, wasmTask(7, sha["grow.wasm"], 1e6, compute.ReduceSum, "", compute.Range{Start: 0, End: 10}), nil)
	if !errors.As(err, &mf) || !strings.Contains(err.Error(), "unreachable") || errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("grow: %v, want a module fault with its trap", err)
	}
	h0, _ := r.Hello()
	// A stuck module call freezes the child at its next GC: the parent's silence limit is
	// shortened for this task only (an idle-priority child on a loaded machine may be starved
	// for seconds, which must not fail the other tasks).
	old := wasmSilence
	wasmSilence = 3 * time.Second
	_, err = r.Run(ctx, wasmTask(4, sha["loop.wasm"], 1e6, compute.ReduceSum, "", compute.Range{Start: 0, End: 1e6}), nil)
	if !errors.As(err, &mf) || !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("loop: %v, want a module fault", err)
	}
	wasmSilence = old
	res, err = r.Run(ctx, wasmTask(5, sha["sum.wasm"], 1e9, compute.ReduceSum, "", compute.Range{Start: 0, End: 1000}), nil)
	if err != nil || res.Done.Len() != 1000 {
		t.Fatalf("after the loop: %v %v", res, err)
	}
	if h1, _ := r.Hello(); h1.PID == h0.PID {
		t.Fatalf("the stuck child (pid %d) was not replaced", h0.PID)
	}
	_, err = r.Run(ctx, wasmTask(6, strings.Repeat("0", 64), 10, compute.ReduceSum, "", compute.Range{Start: 0, End: 10}), nil)
	if err == nil || !strings.Contains(err.Error(), "no such file") || errors.As(err, &mf) {
		t.Fatalf("missing module: %v, want the node's failure, not the module's", err)
	}
}

// TestWasmSilentChild: a child that stops talking during a wasm task (frozen in a module call)
// is killed after wasmSilence and the task fails with the reason.
func TestWasmSilentChild(t *testing.T) {
	old := wasmSilence
	wasmSilence = 500 * time.Millisecond
	t.Cleanup(func() { wasmSilence = old })
	r := startWasmRunner(t, "mute", t.TempDir())
	t0 := time.Now()
	_, err := r.Run(context.Background(), wasmTask(1, strings.Repeat("a", 64), 10, compute.ReduceSum, "", compute.Range{Start: 0, End: 10}), nil)
	if !errors.Is(err, wasm.ErrTimeout) || time.Since(t0) > 20*time.Second {
		t.Fatalf("%v after %v", err, time.Since(t0))
	}
}

// BenchmarkTaskOverhead is the fixed cost of one chunk through the compute child, π against
// wasm (sum.wasm: one item), the module compiled and its instances pooled after the first.
func BenchmarkTaskOverhead(b *testing.B) {
	store, sha := wasmStore(b, "sum.wasm")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: []string{childEnv + "=child", EnvWasmModules + "=" + store, EnvWasmCache + "=" + b.TempDir()}, CPUs: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		name string
		task Chunk
	}{
		{"pi", Chunk{Spec: piSpec(1<<40, 1), Range: compute.Range{Start: 0, End: 1}}},
		{"wasm", wasmTask(0, sha["sum.wasm"], 1<<40, compute.ReduceSum, "", compute.Range{Start: 0, End: 1})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			id := uint64(0)
			for b.Loop() {
				id++
				tc.task.ID = id
				if _, err := r.Run(context.Background(), tc.task, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWasmPausePrefixResume: an owner's pause stops a WebAssembly task between blocks and keeps
// its finished prefix, exact (sum.wasm's closed form); after Resume the rest completes the
// range with nothing lost or counted twice.
func TestWasmPausePrefixResume(t *testing.T) {
	store, sha := wasmStore(t, "sum.wasm")
	r := startWasmRunner(t, "child", store)
	full := compute.Range{Start: 1000, End: 1000 + 1<<50} // far more than the test's lifetime
	task := wasmTask(1, sha["sum.wasm"], 1<<60, compute.ReduceSum, "", full)
	ch := runUntilProgress(t, r, context.Background(), task, nil)
	r.Pause()
	o := waitOutcome(t, ch)
	if o.err != nil {
		t.Fatal(o.err)
	}
	d := o.res.Done
	if d.Start != full.Start || d.End <= d.Start || d.End >= full.End {
		t.Fatalf("prefix %s of %s", d, full)
	}
	tri := func(n uint64) uint64 { // sum of [0, n) mod 2^64
		if n%2 == 0 {
			return n / 2 * (n - 1)
		}
		return (n - 1) / 2 * n
	}
	v, _, err := compute.DecodeWasmPayload(o.res.Payload, compute.ReduceSum)
	if err != nil || v != tri(d.End)-tri(d.Start) {
		t.Fatalf("prefix %s: %d %v, want %d", d, v, err, tri(d.End)-tri(d.Start))
	}
	r.Resume()
	end := d.End + 1_000_000
	rest, err := r.Run(context.Background(), wasmTask(2, sha["sum.wasm"], 1<<60, compute.ReduceSum, "", compute.Range{Start: d.End, End: end}), nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, _, _ := compute.DecodeWasmPayload(rest.Payload, compute.ReduceSum)
	if rest.Done.End != end || v+v2 != tri(end)-tri(full.Start) {
		t.Fatalf("prefix + rest = %d over %s, want %d", v+v2, rest.Done, tri(end)-tri(full.Start))
	}
}

// fakeModule records the params it was asked to release, and whether it was closed.
type fakeModule struct {
	released []string
	closed   bool
}

func (f *fakeModule) Release(params []byte) { f.released = append(f.released, string(params)) }

func (f *fakeModule) Close(context.Context) error {
	f.closed = true
	return nil
}

// TestWasmPoolKeepsTheLastTasks: the child keeps idle instances for the last task's module and
// params only, and that module's machine code only: a task of other params releases the
// instances of the params before, one of another module closes the module before, and tasks of
// one job keep theirs.
func TestWasmPoolKeepsTheLastTasks(t *testing.T) {
	var p pooled
	a, b := &fakeModule{}, &fakeModule{}
	p.use(a, "x")
	p.use(a, "x")
	if len(a.released) != 0 || a.closed {
		t.Fatalf("tasks of one job released its pool (%q) or closed its module (%v)", a.released, a.closed)
	}
	p.use(a, "y")
	if !slices.Equal(a.released, []string{"x"}) || a.closed {
		t.Fatalf("another job of the module: released %q, closed %v; want x released, the module kept", a.released, a.closed)
	}
	p.use(b, "y")
	p.use(b, "y")
	if !a.closed || len(b.released) != 0 || b.closed {
		t.Fatalf("a job of another module: a closed %v, b released %q, closed %v", a.closed, b.released, b.closed)
	}
}
