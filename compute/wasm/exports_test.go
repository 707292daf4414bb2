package wasm

import (
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// ExportsFunction finds a module's exported functions by name, as wazero does: hydra_map in every
// module, hydra_init only in those that take params, and not a name exported as another kind.
func TestExportsFunction(t *testing.T) {
	monte, err := os.ReadFile("../../examples/montecarlo/montecarlo.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		code []byte
		fn   string
		want bool
	}{
		{"sum.wasm", load(t, "sum.wasm"), "hydra_map", true},
		{"sum.wasm", load(t, "sum.wasm"), "hydra_init", false},
		{"emit.wasm", load(t, "emit.wasm"), "hydra_init", true},
		{"montecarlo.wasm", monte, "hydra_init", true},
		{"emit.wasm", load(t, "emit.wasm"), "memory", false}, // a memory, not a function
	} {
		got, err := ExportsFunction(tc.code, tc.fn)
		if err != nil || got != tc.want {
			t.Errorf("%s exports %s: %v %v, want %v", tc.name, tc.fn, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x01\x00\x00\x00\x07\x05\x80"), []byte("\x00asm\x01\x00\x00\x00\x07\x02\x09\x01")} {
		if _, err := ExportsFunction(bad, "hydra_init"); err == nil {
			t.Errorf("% x: no error", bad)
		}
	}
}

// FuzzExportsFunction: never a panic, and for a module wazero compiles (one within checkBounds'
// limits), the same answer as wazero's list of exported functions.
func FuzzExportsFunction(f *testing.F) {
	for _, n := range []string{"sum.wasm", "emit.wasm", "env.wasm", "trap.wasm"} {
		f.Add(load(f, n), "hydra_init")
		f.Add(load(f, n), "hydra_map")
	}
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		got, err := ExportsFunction(b, name)
		if err != nil || len(b) > 1<<16 || checkBounds(b) != nil {
			return
		}
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
		defer rt.Close(ctx)
		m, cerr := rt.CompileModule(ctx, b)
		if cerr != nil {
			return
		}
		defer m.Close(ctx)
		if _, want := m.ExportedFunctions()[name]; got != want {
			t.Fatalf("ExportsFunction(%q) = %v, wazero %v", name, got, want)
		}
	})
}
