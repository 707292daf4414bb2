package wasm

import "bytes"

// codeModule builds a valid module of about size bytes that is almost all code: hydra_map
// (hi − lo) and as many filler functions of body bytes each as fit. Code is what costs the
// compiler memory (a custom section or data of the same size costs a fraction of it).
func codeModule(size, body int) []byte {
	uleb := func(b *bytes.Buffer, v uint64) {
		for {
			c := byte(v & 0x7f)
			if v >>= 7; v == 0 {
				b.WriteByte(c)
				return
			}
			b.WriteByte(c | 0x80)
		}
	}
	var out bytes.Buffer
	section := func(id byte, sec *bytes.Buffer) {
		out.WriteByte(id)
		uleb(&out, uint64(sec.Len()))
		out.Write(sec.Bytes())
	}
	out.Write([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	var types bytes.Buffer // 0: (i64, i64) -> i64; 1: () -> i64
	types.Write([]byte{2, 0x60, 2, 0x7e, 0x7e, 1, 0x7e, 0x60, 0, 1, 0x7e})
	section(1, &types)
	n := 1 + size/(body+4)
	var funcs bytes.Buffer
	uleb(&funcs, uint64(n))
	funcs.WriteByte(0)
	funcs.Write(bytes.Repeat([]byte{1}, n-1))
	section(3, &funcs)
	var exports bytes.Buffer
	exports.Write([]byte{1, 9})
	exports.WriteString("hydra_map")
	exports.Write([]byte{0, 0})
	section(7, &exports)
	var fill bytes.Buffer // no locals; i64.const 0, then (i64.const 1; i64.add)…; end
	fill.Write([]byte{0, 0x42, 0})
	for fill.Len() < body-1 {
		fill.Write([]byte{0x42, 1, 0x7c})
	}
	fill.WriteByte(0x0b)
	var code bytes.Buffer
	uleb(&code, uint64(n))
	hmap := []byte{0, 0x20, 1, 0x20, 0, 0x7d, 0x0b} // local.get 1; local.get 0; i64.sub; end
	uleb(&code, uint64(len(hmap)))
	code.Write(hmap)
	for range n - 1 {
		uleb(&code, uint64(fill.Len()))
		code.Write(fill.Bytes())
	}
	section(10, &code)
	return out.Bytes()
}
