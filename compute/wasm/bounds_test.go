package wasm

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// module assembles a module binary from its sections (id, contents), each framed here.
func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s[0])
		b = appendU32(b, uint32(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

// localsBomb is a module of one function that declares n locals of type i32 (7 bytes of code).
func localsBomb(n uint32) []byte {
	body := appendU32([]byte{1}, n)                                     // one declaration of n locals
	body = append(body, 0x7f, 0x0b)                                     // i32, end
	code := append([]byte{10, 1}, appendU32(nil, uint32(len(body)))...) // one body
	code = append(code, body...)
	return module(
		[]byte{1, 1, 0x60, 0, 0}, // type section: one type, func () -> ()
		[]byte{3, 1, 0},          // function section: one function of type 0
		code,
	)
}

// tableBomb is a module that declares one funcref table of min entries, no maximum.
func tableBomb(min uint32) []byte {
	return module(append([]byte{4, 1, 0x70, 0}, appendU32(nil, min)...))
}

// TestBoundsRefuseAllocationBombs: a module whose declarations make the compiler allocate without
// bound is refused before it is compiled, with a clear error (a body of 2³²−1 locals made wazero
// allocate 4 GiB in the node process that validated an upload); within the limits it compiles.
func TestBoundsRefuseAllocationBombs(t *testing.T) {
	e := engine(t, Config{})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		code []byte
		want string
	}{
		{"locals", localsBomb(1<<32 - 1), "locals"},
		{"locals just over", localsBomb(maxLocals + 1), "locals"},
		{"table", tableBomb(1 << 27), "entries"},
	} {
		if err := e.Validate(ctx, c.code); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal naming %s", c.name, err, c.want)
		}
	}
	if err := checkBounds(localsBomb(maxLocals)); err != nil {
		t.Errorf("%d locals: %v", maxLocals, err)
	}
	if err := checkBounds(tableBomb(1000)); err != nil {
		t.Errorf("a table of 1000: %v", err)
	}
	for _, n := range []string{"emit.wasm", "env.wasm", "grow.wasm", "loop.wasm", "sum.wasm", "trap.wasm"} {
		if err := checkBounds(load(t, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// FuzzCheckBounds: checkBounds refuses a module when an independent reading of its declarations
// (refDecls) finds one function declaring more than maxLocals locals, the functions more than
// maxModuleLocals in all, one table more than maxTableEntries entries or the tables more than
// maxModuleTableEntries in all, and whatever refDecls cannot read. A module within the limits
// that wazero compiles (with the engine's features) passes, and so does its capTables.
// (checkBounds refuses more than refDecls reads: vectors longer than their bytes.)
func FuzzCheckBounds(f *testing.F) {
	f.Add(localsBomb(1<<32 - 1))
	f.Add(localsBomb(maxLocals))
	f.Add(localsBomb(maxLocals + 1))
	f.Add(tableBomb(1 << 27))
	f.Add(tableBomb(maxTableEntries))
	f.Add([]byte("00000000\x04\x00")) // an empty table section: no count
	for _, b := range vectorBombs() {
		f.Add(b.code)
	}
	f.Add(manyLocals(maxModuleLocals/maxLocals+1, maxLocals))
	f.Add(module(append([]byte{0, 4}, "name\x00\x00\x00"...), append([]byte{0, 1, 'x'}, 2, 5, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)))
	for _, n := range []string{"emit.wasm", "env.wasm", "grow.wasm", "loop.wasm", "sum.wasm", "trap.wasm"} {
		f.Add(load(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkBounds(b)
		d, ok := refDecls(b)
		if !ok {
			if err == nil {
				t.Fatalf("passed a module whose declarations cannot be read: % x", b)
			}
			return
		}
		within := d.locals <= maxLocals && d.allLocals <= maxModuleLocals && d.table <= maxTableEntries &&
			d.allTables <= maxModuleTableEntries
		if !within && err == nil {
			t.Fatalf("most locals %d (%d in all), largest table %d (%d in all): checkBounds passed it",
				d.locals, d.allLocals, d.table, d.allTables)
		}
		if err == nil {
			if err := checkBounds(capTables(b)); err != nil {
				t.Fatalf("capTables made a module checkBounds refuses: %v", err)
			}
			// What checkBounds passes wazero compiles within bounds (a module may declare a
			// million locals: about 70 MB in the interpreter); a bomb past it would end the
			// fuzzer. (With 2²² locals allowed, the fuzzer found 4.2 million took 285 MB.)
			if _, ierr := parseImports(b); ierr == nil && len(b) <= 1<<16 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				wazeroCompiles(b)
				runtime.ReadMemStats(&after)
				if d := after.TotalAlloc - before.TotalAlloc; d > 100<<20 {
					t.Fatalf("checkBounds passed it, and compiling it allocated %d bytes", d)
				}
			}
		}
		// wazero is not shown a vector longer than its bytes (it may allocate without bound),
		// nor a proposal's encoding checkBounds refuses, though wazero may take it.
		var long longVector
		var nc notCore
		if within && err != nil && !errors.As(err, &long) && !errors.As(err, &nc) && len(b) <= 1<<16 && wazeroCompiles(b) {
			t.Fatalf("wazero compiles it, checkBounds refuses it: %v", err)
		}
	})
}

// decls is what refDecls reads of a module: the most locals one function declares, the locals
// of all its functions, the largest size one table declares and what all its tables may grow to.
type decls struct{ locals, allLocals, table, allTables uint64 }

// refDecls reads a module's section framing, its table section and its code section's local
// declarations as the WebAssembly spec encodes them (an independent reading, for
// FuzzCheckBounds): ok is false when they are truncated or malformed. Like checkBounds it reads
// neither the magic nor the other sections' contents.
func refDecls(b []byte) (d decls, ok bool) {
	if len(b) < 8 {
		return d, false
	}
	p := b[8:]
	// u32 reads an unsigned LEB128 of at most 5 bytes whose value fits 32 bits.
	u32 := func(q *[]byte) (uint64, bool) {
		var v uint64
		for i := 0; i < 5 && i < len(*q); i++ {
			c := (*q)[i]
			v |= uint64(c&0x7f) << (7 * i)
			if c < 0x80 {
				*q = (*q)[i+1:]
				return v, v <= 0xffffffff
			}
		}
		return 0, false
	}
	take := func(q *[]byte, n uint64) ([]byte, bool) {
		if n > uint64(len(*q)) {
			return nil, false
		}
		s := (*q)[:n]
		*q = (*q)[n:]
		return s, true
	}
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		size, ok := u32(&p)
		if !ok {
			return d, false
		}
		sec, ok := take(&p, size)
		if !ok {
			return d, false
		}
		switch id {
		case 4: // tables: count, then (reference type, limits) each
			n, ok := u32(&sec)
			if !ok {
				return d, false
			}
			for range n {
				if len(sec) < 2 || sec[1] > 1 {
					return d, false
				}
				flags := sec[1]
				sec = sec[2:]
				reach := uint64(maxTableEntries) // what a table without a maximum may grow to
				for range 1 + int(flags) {
					v, ok := u32(&sec)
					if !ok {
						return d, false
					}
					d.table = max(d.table, v)
					reach = v
				}
				d.allTables += reach
			}
		case 10: // code: count, then (size, body) each; a body starts with its local declarations
			n, ok := u32(&sec)
			if !ok {
				return d, false
			}
			for range n {
				size, ok := u32(&sec)
				if !ok {
					return d, false
				}
				body, ok := take(&sec, size)
				if !ok {
					return d, false
				}
				groups, ok := u32(&body)
				if !ok {
					return d, false
				}
				var locals uint64
				for range groups {
					c, ok := u32(&body)
					if !ok || len(body) < 1 {
						return d, false
					}
					body = body[1:] // value type
					locals += c
				}
				d.locals = max(d.locals, locals)
				d.allLocals += locals
			}
		}
	}
	return d, true
}

// wazeroCompiles reports whether wazero compiles b with the engine's core features
// (interpreter: the compiler's verdict on the binary is the same, and it is cheaper).
func wazeroCompiles(b []byte) bool {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	m, err := rt.CompileModule(ctx, b)
	if err != nil {
		return false
	}
	m.Close(ctx)
	return true
}

// TestCutCountsRefused: a table, code or import section too short to hold its count is
// refused (found by FuzzCheckBounds: an empty code section passed as one without bodies).
func TestCutCountsRefused(t *testing.T) {
	for _, id := range []byte{4, 10} {
		if err := checkBounds(module([]byte{id})); err == nil {
			t.Errorf("checkBounds passed an empty section %d", id)
		}
	}
	if imps, err := parseImports(module([]byte{2})); err == nil {
		t.Errorf("parseImports read an empty import section as %v", imps)
	}
}

// manyLocals is a module of fns functions that each declare per locals of type i32.
func manyLocals(fns, per uint32) []byte {
	body := append(appendU32([]byte{1}, per), 0x7f, 0x0b) // one declaration of per i32 locals, end
	funcs := appendU32([]byte{3}, fns)
	code := appendU32([]byte{10}, fns)
	for range fns {
		funcs = append(funcs, 0)
		code = append(appendU32(code, uint32(len(body))), body...)
	}
	return module([]byte{1, 1, 0x60, 0, 0}, funcs, code)
}

// vectorBombs are modules of a few bytes whose one vector announces 2³²−1 entries.
func vectorBombs() []struct {
	name string
	code []byte
} {
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	at := func(prefix ...byte) []byte { return append(prefix, huge...) }
	nameSec := append([]byte{0, 4}, "name"...)
	return []struct {
		name string
		code []byte
	}{
		{"functions", module(at(3))},
		{"globals", module(at(6))},
		{"exports", module(at(7))},
		{"element segments", module(at(9))},
		{"data segments", module(at(11))},
		{"parameters", module(at(1, 1, 0x60))},
		{"function indices", module(at(9, 1, 1, 0))},             // a passive segment's indices
		{"element expressions", module(at(9, 1, 5, 0x70))},       // a passive segment's expressions
		{"data bytes", module(at(11, 1, 1))},                     // a passive segment's bytes
		{"export name", module(at(7, 1))},                        // an export's name
		{"custom section name", module(at(0))},                   // any custom section's name
		{"function names", module(append(nameSec, at(1, 5)...))}, // the name section's function names
		{"local names", module(append(nameSec, at(2, 7, 1, 0)...))},
	}
}

// TestBoundsRefuseVectorBombs: a module whose vector announces more entries than its bytes hold
// is refused before wazero sees it, at once and without allocating (wazero makes a vector at its
// announced length first: 15 bytes announcing 2³²−1 globals ended the node on a fatal
// out-of-memory error, and as many exports held it for minutes). So is a module whose functions
// declare more than maxModuleLocals locals in all; within it, they compile.
func TestBoundsRefuseVectorBombs(t *testing.T) {
	e := engine(t, Config{})
	for _, b := range vectorBombs() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := e.Validate(context.Background(), b.code)
		runtime.ReadMemStats(&after)
		var long longVector
		if !errors.Is(err, errBadBinary) || !errors.As(err, &long) {
			t.Errorf("%s (% x): %v, want a refusal of a vector longer than its bytes", b.name, b.code, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("%s: refusing it allocated %d bytes", b.name, d)
		}
	}
	per := uint32(maxLocals)
	if err := checkBounds(manyLocals(maxModuleLocals/per+1, per)); err == nil || !strings.Contains(err.Error(), "in all") {
		t.Errorf("%d functions of %d locals: %v, want a refusal", maxModuleLocals/per+1, per, err)
	}
	if b := manyLocals(maxModuleLocals/per, per); checkBounds(b) != nil || !wazeroCompiles(b) {
		t.Errorf("%d functions of %d locals: %v, or wazero does not compile it", maxModuleLocals/per, per, checkBounds(b))
	}
}

// tableGrower is a module with a funcref table of no maximum whose hydra_map returns what
// table.grow(ref.null, delta) returns (the old size, or 2³²−1 for −1).
func tableGrower(delta uint32) []byte {
	body := append([]byte{0, 0xd0, 0x70, 0x41}, appendI32(nil, int32(delta))...) // ref.null func, i32.const delta
	body = append(body, 0xfc, 0x0f, 0, 0xad, 0x0b)                               // table.grow 0, i64.extend_i32_u, end
	code := append([]byte{10, 1}, appendU32(nil, uint32(len(body)))...)
	exports := append(append([]byte{7, 1, 9}, "hydra_map"...), 0, 0)
	return module([]byte{1, 1, 0x60, 2, 0x7e, 0x7e, 1, 0x7e}, []byte{3, 1, 0}, []byte{4, 1, 0x70, 0, 0},
		exports, append(code, body...))
}

// appendI32 appends v as a signed LEB128.
func appendI32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// TestTablesCapped: a table without a maximum grows to maxTableEntries and no further (grow
// returns −1, as memory.grow does past the memory cap), the same on every node; it used to grow
// to 2³²−1 entries of 8 bytes: eight workers growing by 2³⁰ got the test killed for memory. A
// module whose tables could reach more than maxModuleTableEntries together is refused.
func TestTablesCapped(t *testing.T) {
	e := engine(t, Config{})
	for _, c := range []struct {
		delta uint32
		want  uint64
	}{{maxTableEntries, 0}, {maxTableEntries + 1, 1<<32 - 1}, {1 << 30, 1<<32 - 1}} {
		m, err := e.Compile(context.Background(), tableGrower(c.delta))
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res, err := m.Run(context.Background(), Run{Reduce: compute.ReduceMin, Start: 0, End: 8, Workers: 8}) // each instance's first call
		runtime.ReadMemStats(&after)
		if err != nil || res.Value != c.want {
			t.Errorf("table.grow(%d): %d %v, want %d", c.delta, res.Value, err, c.want)
		}
		if d := after.TotalAlloc - before.TotalAlloc; c.want != 0 && d > 1<<20 {
			t.Errorf("table.grow(%d) failed after allocating %d bytes", c.delta, d)
		}
	}
	growable := []byte{4, maxModuleTableEntries/maxTableEntries + 1}
	for range growable[1] {
		growable = append(growable, 0x70, 0, 0)
	}
	if err := checkBounds(module(growable)); err == nil || !strings.Contains(err.Error(), "in all") {
		t.Errorf("%d tables without a maximum: %v, want a refusal", growable[1], err)
	}
	if b := module([]byte{4, 1, 0x70, 1, 0, 5}); !bytes.Equal(capTables(b), b) {
		t.Errorf("capTables changed a module whose table has a maximum")
	}
}

// TestNameSubsectionSizes: a name subsection whose declared size is not its contents' is
// refused. wazero reads the module, function and local names by their contents and counts the
// declared sizes down from the section's, so a size too small made it read on past the name
// section, taking the next section's bytes for subsections: a custom section after it holding
// a local-name count of 2³²−1 made it ask for 96 GiB at once, a fatal out-of-memory error, past
// checkBounds's reading of each section apart.
func TestNameSubsectionSizes(t *testing.T) {
	name := append([]byte{0, 4}, "name"...)
	next := append([]byte{0, 1, 'x'}, 2, 5, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f) // custom "x": local names, 2³²−1 of them
	for _, c := range []struct {
		sub  []byte
		pass bool
	}{
		{[]byte{0, 1, 0}, true},             // module name "": size 1
		{[]byte{0, 0, 0}, false},            // size 0 for 1 byte
		{[]byte{0, 3, 0, 0, 0}, false},      // size 3 for 1 byte
		{[]byte{1, 4, 1, 0, 1, 'f'}, true},  // function 0 named f
		{[]byte{1, 2, 1, 0, 1, 'f'}, false}, // size 2 for 4 bytes
		{[]byte{9, 2, 7, 7}, true},          // an unknown subsection, skipped
	} {
		b := module(append(append([]byte(nil), name...), c.sub...), next)
		if err := checkBounds(b); (err == nil) != c.pass {
			t.Errorf("name subsection % x: checkBounds says %v, want it to pass: %v", c.sub, err, c.pass)
		}
		if c.pass && !wazeroCompiles(b) {
			t.Errorf("name subsection % x: wazero does not compile it", c.sub)
		}
	}
}
