package wasm

import (
	"context"
	"strings"
	"testing"
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

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
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

// FuzzCheckBounds: checkBounds never panics on any input.
func FuzzCheckBounds(f *testing.F) {
	f.Add(localsBomb(1<<32 - 1))
	f.Add(tableBomb(1 << 27))
	f.Add(load(f, "sum.wasm"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = checkBounds(b) })
}
