package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func engine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func compile(t testing.TB, e *Engine, name string) *Module {
	t.Helper()
	m, err := e.Compile(context.Background(), load(t, name))
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return m
}

// TestSumAnySplit: the sum of item indices over a range is the same for any worker count, and
// equals the closed form.
func TestSumAnySplit(t *testing.T) {
	m := compile(t, engine(t, Config{}), "sum.wasm")
	const lo, hi = 17, 3_000_017
	want := uint64(hi*(hi-1)/2 - lo*(lo-1)/2)
	for _, w := range []int{1, 3, 8} {
		var last atomic.Uint64
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: lo, End: hi, Workers: w,
			OnProgress: func(d uint64) { last.Store(d) }})
		if err != nil {
			t.Fatal(err)
		}
		if res.Done != hi-lo || res.Value != want || last.Load() != hi-lo {
			t.Fatalf("workers %d: done %d value %d progress %d, want %d %d", w, res.Done, res.Value, last.Load(), hi-lo, want)
		}
	}
}

// TestProgressOnlyGrows: OnProgress is called one call at a time with a growing count, the
// last one the whole run, whatever the workers (the callback here takes a while, so calls made
// at once by two workers would interleave; they used to, and a smaller count could come last).
func TestProgressOnlyGrows(t *testing.T) {
	m := compile(t, engine(t, Config{}), "sum.wasm")
	const lo, hi = 0, 2_000_000
	var mu sync.Mutex
	var seen []uint64
	var inCall atomic.Int32
	res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: lo, End: hi, Workers: 8,
		OnProgress: func(d uint64) {
			if inCall.Add(1) != 1 {
				t.Error("OnProgress called while another call runs")
			}
			time.Sleep(50 * time.Microsecond) // widen the window between two workers' calls
			mu.Lock()
			seen = append(seen, d)
			mu.Unlock()
			inCall.Add(-1)
		}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != res.Done || res.Done != hi-lo {
		t.Fatalf("done %d, %d progress calls, the last %v; want %d last", res.Done, len(seen), seen[max(0, len(seen)-1):], hi-lo)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("progress call %d reported %d after %d", i, seen[i], seen[i-1])
		}
	}
}

// TestRefused: modules that would reach outside the sandbox are refused before they run, with
// the reason.
func TestRefused(t *testing.T) {
	e := engine(t, Config{})
	for name, want := range map[string]string{
		"readfile.wasm": "wasi_snapshot_preview1.path_open",
		"socket.wasm":   "wasi_snapshot_preview1.sock_accept",
		"env.wasm":      "env.abort",
		"shared.wasm":   "shared",
	} {
		_, err := e.Compile(context.Background(), load(t, name))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("not wasm at all"), append([]byte("\x00asm\x01\x00\x00\x00\x02"), 0xff)} {
		if _, err := e.Compile(context.Background(), bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// TestHostileRuns: a module that loops forever, allocates past the cap or traps fails the run
// with its reason, keeps the finished prefix, and leaves the engine working.
func TestHostileRuns(t *testing.T) {
	quick := engine(t, Config{CallTimeout: 300 * time.Millisecond, MemoryPages: 64})
	e := engine(t, Config{MemoryPages: 64})
	for _, c := range []struct {
		name, want string
		stuck      uint64
	}{
		{"loop.wasm", "no answer within the call deadline", 1000},
		{"grow.wasm", "unreachable", 0},
		{"trap.wasm", "unreachable", 5000},
	} {
		e := e
		if c.name == "loop.wasm" {
			e = quick
		}
		m := compile(t, e, c.name)
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 100_000, Workers: 2})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if res.Done > c.stuck {
			t.Errorf("%s: prefix of %d items passes the failing item %d", c.name, res.Done, c.stuck)
		}
		if res.Value != res.Done && c.name != "grow.wasm" {
			t.Errorf("%s: prefix value %d for %d items", c.name, res.Value, res.Done)
		}
	}
	// Unharmed: the same engine still runs a module.
	m := compile(t, e, "sum.wasm")
	if res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 1000, Workers: 2}); err != nil || res.Value != 999*1000/2 {
		t.Fatalf("after hostile modules: %v %v", res, err)
	}
}

// TestConcatOrder: emitted bytes come back in item order whatever the worker count, and params
// reach hydra_init.
func TestConcatOrder(t *testing.T) {
	m := compile(t, engine(t, Config{}), "emit.wasm")
	var want bytes.Buffer
	const lo, hi = 3, 50_003
	for i := uint64(lo); i < hi; i++ {
		fmt.Fprintf(&want, "%d,", i*i)
	}
	for _, w := range []int{1, 4} {
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceConcat, Params: []byte(","), Start: lo, End: hi, Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Out, want.Bytes()) || res.Value != hi-lo {
			t.Fatalf("workers %d: %d bytes (value %d), want %d", w, len(res.Out), res.Value, want.Len())
		}
	}
	if _, err := compile(t, engine(t, Config{}), "sum.wasm").Run(context.Background(), Run{Reduce: compute.ReduceConcat, End: 10}); err == nil {
		t.Fatal("concat accepted for a module without hydra.emit")
	}
	if _, err := compile(t, engine(t, Config{}), "sum.wasm").Run(context.Background(), Run{Reduce: compute.ReduceSum, End: 10, Params: []byte("x")}); err == nil {
		t.Fatal("params accepted by a module without hydra_init")
	}
}

// TestMemoryCap: a module growing its memory to the default cap (128 MiB) gets -1 from
// memory.grow past it and traps with its own message, promptly: the memory is reserved once, not
// copied on every growth (before, the copies took seconds of CPU and the compute child took the
// module for an endless loop). Here the call deadline is 5 s, so a slow growth fails the test
// with a timeout instead of the trap.
func TestMemoryCap(t *testing.T) {
	e := engine(t, Config{CallTimeout: 5 * time.Second})
	m := compile(t, e, "grow.wasm")
	for range 3 {
		_, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 4, Workers: 2})
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("grow to the cap: %v, want the module's trap", err)
		}
	}
	if alloc := memoryAllocator(); alloc != nil {
		mem := alloc.Allocate(0, 4*wasmPage)
		defer mem.Free()
		b := mem.Reallocate(wasmPage)
		b[wasmPage-1] = 7
		if b = mem.Reallocate(4 * wasmPage); len(b) != 4*wasmPage || b[wasmPage-1] != 7 || b[4*wasmPage-1] != 0 {
			t.Fatalf("grown memory: %d bytes, contents lost", len(b))
		}
		if mem.Reallocate(5*wasmPage) != nil {
			t.Fatal("grown past its maximum")
		}
	}
}

// TestRunBlocks: with BlockItems, a run's result carries each commitment block's value and
// output, whatever the worker count, and a chunk's payload has the same leaves as two chunks
// split at a block boundary.
func TestRunBlocks(t *testing.T) {
	m := compile(t, engine(t, Config{}), "emit.wasm")
	const lo, hi, bi = 3, 50_003, 1000
	spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: m.SHA256, Items: bi * compute.WasmJobBlocks, Reduce: compute.ReduceConcat, Params: ","}}
	run := func(start, end uint64, workers int) []byte {
		t.Helper()
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceConcat, Params: []byte(","), Start: start, End: end, Workers: workers, BlockItems: bi})
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range res.Blocks {
			bs := max(start, (start/bi+uint64(i))*bi)
			be := min((bs/bi+1)*bi, end)
			var want bytes.Buffer
			for x := bs; x < be; x++ {
				fmt.Fprintf(&want, "%d,", x*x)
			}
			if b.Value != be-bs || !bytes.Equal(b.Out, want.Bytes()) {
				t.Fatalf("workers %d: block %d [%d,%d): value %d, %d bytes, want %d", workers, i, bs, be, b.Value, len(b.Out), want.Len())
			}
		}
		return compute.EncodeWasmBlocksPayload(compute.ReduceConcat, res.Blocks)
	}
	whole, err := compute.ChunkBlocks(spec, compute.Range{Start: lo, End: hi})
	if err != nil || len(whole) != 51 {
		t.Fatal(len(whole), err)
	}
	var ref []audit.Hash
	for _, w := range []int{1, 4} {
		leaves, _, err := compute.ChunkLeaves(spec, compute.Range{Start: lo, End: hi}, run(lo, hi, w))
		if err != nil || len(leaves) != len(whole) || ref != nil && !slices.Equal(leaves, ref) {
			t.Fatalf("workers %d: %d leaves: %v", w, len(leaves), err)
		}
		ref = leaves
	}
	a, _, _ := compute.ChunkLeaves(spec, compute.Range{Start: lo, End: 20_000}, run(lo, 20_000, 3))
	b, _, _ := compute.ChunkLeaves(spec, compute.Range{Start: 20_000, End: hi}, run(20_000, hi, 2))
	if !slices.Equal(append(a, b...), ref) {
		t.Fatal("two chunks' leaves differ from the whole chunk's")
	}
}

// emitted is what emit.wasm emits for items [lo, hi) with separator '\n'.
func emitted(lo, hi uint64) []byte {
	var b []byte
	for i := lo; i < hi; i++ {
		b = fmt.Appendf(b, "%d\n", i*i)
	}
	return b
}

// TestOutputCap: a run whose output would pass MaxOutput ends its prefix before the call that
// emitted too much (without an error: the rest of the range is another run's), however many
// workers emit at once, and never holds more than MaxOutput; runs of the rest continue it to
// the whole output. Several workers each given the room left used to emit past the cap together
// (Run returned 525,751 bytes under a cap of 500,000), a result too big for a chunk.
func TestOutputCap(t *testing.T) {
	const limit, end = 500_000, 100_000
	m := compile(t, engine(t, Config{MaxOutput: limit}), "emit.wasm")
	for _, workers := range []int{1, 8} {
		var out []byte
		runs := 0
		for at := uint64(0); at < end; runs++ {
			res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceConcat, Start: at, End: end, Workers: workers, BlockItems: 4096})
			if err != nil {
				t.Fatalf("workers %d, run from %d: %v", workers, at, err)
			}
			if len(res.Out) > limit || res.Done == 0 || res.Value != res.Done {
				t.Fatalf("workers %d, run from %d: %d items, %d bytes, value %d", workers, at, res.Done, len(res.Out), res.Value)
			}
			if at+res.Done < end && len(res.Out)+len(emitted(at+res.Done, at+res.Done+1)) <= limit/2 {
				t.Errorf("workers %d, run from %d: stopped at %d with %d bytes", workers, at, at+res.Done, len(res.Out))
			}
			out = append(out, res.Out...)
			at += res.Done
		}
		if !bytes.Equal(out, emitted(0, end)) || runs < 2 {
			t.Fatalf("workers %d: %d runs made %d bytes, want %d", workers, runs, len(out), len(emitted(0, end)))
		}
	}
}

// TestOutputCapOneItem: an item that alone emits more than MaxOutput fails the run, whatever
// the workers; the items before it are the prefix of a run that starts before it.
func TestOutputCapOneItem(t *testing.T) {
	m := compile(t, engine(t, Config{MaxOutput: 11}), "emit.wasm") // 100000² and its newline: 12 bytes
	for _, workers := range []int{1, 4} {
		_, err := m.Run(context.Background(), Run{Reduce: compute.ReduceConcat, Start: 100_000, End: 200_000, Workers: workers})
		if err == nil || !strings.Contains(err.Error(), "item 100000 alone emits more than 11 bytes") {
			t.Fatalf("workers %d: %v", workers, err)
		}
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceConcat, Start: 99_990, End: 200_000, Workers: workers})
		if err != nil || res.Done != 1 || string(res.Out) != "9998000100\n" {
			t.Fatalf("workers %d, from 99990: %+v %v", workers, res, err)
		}
	}
}

// TestStopKeepsPrefix: cancelling a run mid-way returns an exact prefix without error, and the
// rest of the range completes it to the full value.
func TestStopKeepsPrefix(t *testing.T) {
	m := compile(t, engine(t, Config{}), "sum.wasm")
	const n = 2_000_000_000
	ctx, cancel := context.WithCancel(context.Background())
	var cut atomic.Bool
	res, err := m.Run(ctx, Run{Reduce: compute.ReduceSum, Start: 0, End: n, Workers: 2, OnProgress: func(d uint64) {
		if d > 1000 && !cut.Swap(true) {
			cancel()
		}
	}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if res.Done == 0 || res.Done >= n || res.Value != res.Done*(res.Done-1)/2 {
		t.Fatalf("prefix %d value %d", res.Done, res.Value)
	}
	var polled atomic.Int32
	res2, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 5, End: n, Workers: 2,
		Poll: func() bool { return polled.Add(1) > 3 }})
	if err != nil || res2.Done == 0 || res2.Done >= n-5 {
		t.Fatalf("poll stop: %+v %v", res2, err)
	}
}

// TestDiskCache: a second engine on the same cache directory compiles from the cache, faster.
func TestDiskCache(t *testing.T) {
	path := "../../examples/primes/primes.wasm"
	if raceEnabled {
		path = "../../examples/collatz/collatz.wasm"
	}
	code, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var took [2]time.Duration
	for i := range took {
		e := engine(t, Config{CacheDir: dir})
		t0 := time.Now()
		if _, err := e.Compile(context.Background(), code); err != nil {
			t.Fatal(err)
		}
		took[i] = time.Since(t0)
		e.Close(context.Background())
		if files, _ := filepath.Glob(filepath.Join(dir, "*", "*")); len(files) == 0 {
			t.Fatal("nothing cached")
		}
	}
	if !raceEnabled && took[1]*2 > took[0] {
		t.Fatalf("cached compile %v, first %v: the cache did not help", took[1], took[0])
	}
	t.Logf("compile %v, from cache %v", took[0], took[1])
}

func TestErrorsWrap(t *testing.T) {
	_, err := engine(t, Config{}).Compile(context.Background(), load(t, "socket.wasm"))
	if !errors.Is(err, ErrForbiddenImport) {
		t.Fatal(err)
	}
}

// FuzzParseImports: the import lister never panics and never lists more imports than bytes,
// and for a module wazero compiles (with the engine's features; only one within checkBounds'
// limits is compiled) it lists exactly the imports wazero reads: the same functions in the same
// order, the same memories.
func FuzzParseImports(f *testing.F) {
	for _, n := range []string{"readfile.wasm", "socket.wasm", "env.wasm", "emit.wasm", "sum.wasm", "shared.wasm"} {
		f.Add(load(f, n))
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x02\x00")) // an empty import section: no count
	f.Fuzz(func(t *testing.T, b []byte) {
		imps, err := parseImports(b)
		if err == nil && len(imps) > len(b) {
			t.Fatalf("%d imports from %d bytes", len(imps), len(b))
		}
		_ = checkImports(imps)
		if len(b) > 1<<16 || checkBounds(b) != nil {
			return // compiling it could take what checkBounds is there to refuse
		}
		funcs, mems, ok := wazeroImports(b)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("wazero compiles it, parseImports says %v", err)
		}
		var gotFuncs, gotMems []string
		for _, im := range imps {
			switch im.Kind {
			case 0:
				gotFuncs = append(gotFuncs, im.Module+"."+im.Name)
			case 2:
				gotMems = append(gotMems, im.Module+"."+im.Name)
			}
		}
		if !slices.Equal(gotFuncs, funcs) || !slices.Equal(gotMems, mems) {
			t.Fatalf("parseImports: functions %q, memories %q; wazero: %q, %q", gotFuncs, gotMems, funcs, mems)
		}
	})
}

// wazeroImports compiles b with wazero (the engine's core features, the interpreter) and
// returns its imported functions in order and its imported memories as module.name; ok is false
// when wazero does not compile it.
func wazeroImports(b []byte) (funcs, mems []string, ok bool) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, b)
	if err != nil {
		return nil, nil, false
	}
	defer m.Close(ctx)
	for _, fn := range m.ImportedFunctions() {
		mod, name, _ := fn.Import()
		funcs = append(funcs, mod+"."+name)
	}
	for _, mem := range m.ImportedMemories() {
		mod, name, _ := mem.Import()
		mems = append(mems, mod+"."+name)
	}
	return funcs, mems, true
}

// BenchmarkInterruptible measures the cost of wazero's termination checks on a tight loop (the
// C example): Config.Uninterruptible drops them.
func BenchmarkInterruptible(b *testing.B) {
	code, err := os.ReadFile("../../examples/collatz/collatz.wasm")
	if err != nil {
		b.Fatal(err)
	}
	for _, fast := range []bool{false, true} {
		b.Run(fmt.Sprintf("uninterruptible=%v", fast), func(b *testing.B) {
			e := engine(b, Config{Uninterruptible: fast})
			m, err := e.Compile(context.Background(), code)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := m.Run(context.Background(), Run{Reduce: compute.ReduceMax, End: 100_000, Workers: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTailKeepsTheEnd: a module's output keeps its last maxStderrTail bytes, whatever the size of
// each write, without holding a large write whole (a write may be the whole 128 MiB memory).
func TestTailKeepsTheEnd(t *testing.T) {
	var tl tail
	var all []byte
	for _, n := range []int{10, 3000, 5, maxStderrTail, 1, 1 << 20, 7} {
		p := bytes.Repeat([]byte{byte('a' + n%26)}, n)
		if w, err := tl.Write(p); w != n || err != nil {
			t.Fatalf("Write of %d: %d %v", n, w, err)
		}
		all = append(all, p...)
		if want := all[max(len(all)-maxStderrTail, 0):]; tl.String() != string(want) || cap(tl.b) > 4*maxStderrTail {
			t.Fatalf("after a write of %d: %d bytes kept (capacity %d), want the last %d", n, len(tl.b), cap(tl.b), len(want))
		}
	}
}

// TestModuleClose: a closed module is forgotten by its engine, and compiling its bytes again
// gives a module that runs.
func TestModuleClose(t *testing.T) {
	e := engine(t, Config{})
	m := compile(t, e, "sum.wasm")
	if _, err := m.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 10, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2 := compile(t, e, "sum.wasm")
	if m2 == m {
		t.Fatal("the engine gave the closed module again")
	}
	if res, err := m2.Run(context.Background(), Run{Reduce: compute.ReduceSum, Start: 0, End: 10, Workers: 2}); err != nil || res.Value != 45 {
		t.Fatalf("%+v %v", res, err)
	}
}

// recursion is a module whose hydra_map(lo, hi) returns f(hi), where f(n) = n == 0 ? 0 : f(n−1)+1:
// hi nested calls.
func recursion() []byte {
	f := []byte{0, 0x20, 0, 0x50, 0x04, 0x7e, 0x42, 0, 0x05, 0x20, 0, 0x42, 1, 0x7d, 0x10, 0, 0x42, 1, 0x7c, 0x0b, 0x0b}
	hm := []byte{0, 0x20, 1, 0x10, 0, 0x0b}
	code := []byte{10}
	c := []byte{2}
	c = append(appendU32(c, uint32(len(f))), f...)
	c = append(appendU32(c, uint32(len(hm))), hm...)
	code = append(code, c...)
	exp := append(append([]byte{7, 1, 9}, "hydra_map"...), 0, 1)
	return module([]byte{1, 2, 0x60, 1, 0x7e, 1, 0x7e, 0x60, 2, 0x7e, 0x7e, 1, 0x7e}, []byte{3, 2, 0, 1}, exp, code)
}

// TestCallDepth pins what docs/wasm.md says of recursion: wazero's interpreter (armv7, and a
// process that may not make memory executable) traps at 2,000 nested calls, its compiler (amd64,
// arm64) goes past a million, so a module recursing between the two fails its chunks on the
// nodes that interpret it only. A change of either figure in a wazero upgrade shows here.
func TestCallDepth(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		rc        wazero.RuntimeConfig
		ok, traps uint64
	}{
		{"interpreter", wazero.NewRuntimeConfigInterpreter(), 1998, 1999},
		{"compiler", wazero.NewRuntimeConfigCompiler(), 1_000_000, 100_000_000},
	} {
		if c.name == "compiler" && !platformCompiles() {
			continue
		}
		rt := wazero.NewRuntimeWithConfig(ctx, c.rc.WithCoreFeatures(api.CoreFeaturesV2))
		defer rt.Close(ctx)
		m, err := rt.Instantiate(ctx, recursion())
		if err != nil {
			t.Fatal(err)
		}
		if r, err := m.ExportedFunction("hydra_map").Call(ctx, 0, c.ok); err != nil || r[0] != c.ok {
			t.Errorf("%s, depth %d: %v %v", c.name, c.ok, r, err)
		}
		if _, err := m.ExportedFunction("hydra_map").Call(ctx, 0, c.traps); err == nil || !strings.Contains(err.Error(), "stack overflow") {
			t.Errorf("%s, depth %d: %v, want a stack overflow", c.name, c.traps, err)
		}
	}
}

// platformCompiles reports whether wazero has its compiler here and may use it.
func platformCompiles() bool {
	return (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") && !CompilerRefused()
}
