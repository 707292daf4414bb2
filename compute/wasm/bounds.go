package wasm

import "fmt"

// Limits of a module's declarations, checked before the compiler sees it (checkBounds). The
// compiler (wazero) allocates what a declaration announces, before and apart from the memory
// limit of a running instance: a function body that declares 2³²−1 locals takes 7 bytes and
// made it allocate 4 GiB in the node process that validates an upload, and a table may be
// declared, or grown, to 2²⁷ entries of 8 bytes each in the compute child. Its decoder also
// makes every vector (of functions, globals, exports, element and data segments, names, a type's
// parameters, a segment's bytes…) at the length the binary announces before reading an entry: a
// module of 15 bytes that announced 2³²−1 globals or data segments made it ask for 200 GiB at
// once, a fatal out-of-memory error that ended the node (TestBoundsRefuseVectorBombs).
const (
	// maxLocals bounds the locals a function declares (the figure browsers' engines use).
	maxLocals = 50_000
	// maxModuleLocals bounds the locals all of a module's functions declare together: wazero
	// allocates about 8 bytes per declared local compiling (one kept for the module's life),
	// about 70 in its interpreter, and a body of 7 bytes may declare maxLocals of them, so 8 KB
	// of such bodies made the compiler allocate 384 MiB and a 16 MiB module about 800 GiB.
	// Compiled programs declare a few locals per function: examples/primes (Go, 1.9 MB)
	// declares 5,339 in all.
	maxModuleLocals = 1 << 20
	// maxTableEntries bounds a table's declared minimum and maximum, and is the maximum of a
	// table that declares none (capTables): the function tables of compiled Go, Rust and C
	// programs hold their functions' count, thousands. wazero grows a table without a maximum
	// up to 2³²−1 entries of 8 bytes, apart from the memory cap: one table.grow took 8 GiB.
	maxTableEntries = 1 << 20
	// maxModuleTableEntries bounds the entries a module's tables may reach together (a table
	// without a maximum counting for maxTableEntries): 32 MiB per instance.
	maxModuleTableEntries = 1 << 22
)

// checkBounds refuses a module whose code section or tables announce more than the limits above,
// or whose vectors announce more entries than their section's bytes can hold (each entry takes
// at least one byte, most more). It reads every section wazero decodes but the contents of
// function bodies past their local declarations, allocates nothing in proportion to what the
// input announces, and never panics: it is fed untrusted uploads (FuzzCheckBounds). What it
// cannot read as WebAssembly 2.0 it refuses: wazero would refuse it too.
func checkBounds(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: truncated", errBadBinary)
	}
	r := reader{b: b[8:]}
	for len(r.b) > 0 {
		id := r.byte1()
		sec := r.take(r.u32())
		if r.err != nil {
			return fmt.Errorf("%w: section %d: %w", errBadBinary, id, r.err)
		}
		var err error
		switch id {
		case 0:
			err = checkCustom(sec)
		case 1:
			err = checkTypes(sec)
		case 2:
			_, err = importSection(sec) // as parseImports does, for FuzzCheckBounds's sake
		case 3:
			err = checkVectors(sec, "function section", func(s *reader) {
				for range s.count("functions", 1) {
					s.u32()
				}
			})
		case 4:
			err = checkTables(sec)
		case 6:
			err = checkVectors(sec, "global section", func(s *reader) {
				for range s.count("globals", 3) {
					s.valueType()
					s.byte1() // mutability
					s.constExpr()
				}
			})
		case 7:
			err = checkVectors(sec, "export section", func(s *reader) {
				for range s.count("exports", 3) {
					s.name()
					s.byte1() // kind
					s.u32()
				}
			})
		case 9:
			err = checkVectors(sec, "element section", checkElements)
		case 10:
			err = checkCode(sec)
		case 11:
			err = checkVectors(sec, "data section", checkData)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkTables checks the table section's declared sizes, and what the tables may grow to
// together (a table with no maximum is given maxTableEntries, capTables).
func checkTables(sec []byte) error {
	s := reader{b: sec}
	n := s.u32()
	if s.err != nil {
		return fmt.Errorf("%w: table count: %v", errBadBinary, s.err)
	}
	if uint64(n) > uint64(len(sec)) {
		return fmt.Errorf("%w: %w", errBadBinary, longVector(fmt.Sprintf("%d tables in %d bytes", n, len(sec))))
	}
	all := uint64(0)
	for i := range n {
		if t := s.byte1(); s.err == nil && t != 0x70 && t != 0x6f {
			return fmt.Errorf("%w: table %d: %w", errBadBinary, i, notCore(fmt.Sprintf("reference type %#x", t)))
		}
		flags := s.byte1()
		if flags&^1 != 0 {
			return fmt.Errorf("%w: table %d: limits flags %#x", errBadBinary, i, flags)
		}
		lo := s.u32()
		hi := uint32(maxTableEntries)
		if flags&1 != 0 {
			hi = s.u32()
		}
		if s.err != nil {
			return fmt.Errorf("%w: table section: %v", errBadBinary, s.err)
		}
		if lo > maxTableEntries || hi > maxTableEntries {
			return fmt.Errorf("table %d declares %d to %d entries: at most %d", i, lo, hi, maxTableEntries)
		}
		if all += uint64(hi); all > maxModuleTableEntries {
			return fmt.Errorf("the tables may grow to more than %d entries in all (a table without a maximum counts for %d)",
				maxModuleTableEntries, maxTableEntries)
		}
	}
	return nil
}

// capTables returns code with maxTableEntries as the maximum of each table that declares none,
// so that table.grow past it fails (returns −1) the same way on every node, as memory.grow
// does past the memory cap, instead of allocating up to 32 GiB; code itself when every table
// has a maximum. code passed checkBounds.
func capTables(code []byte) []byte {
	r := reader{b: code[8:]}
	for len(r.b) > 0 {
		start := len(code) - len(r.b)
		id := r.byte1()
		sec := r.take(r.u32())
		if id != 4 {
			continue
		}
		s := reader{b: sec}
		n := s.u32()
		out := appendU32(nil, n)
		capped := false
		for range n {
			ref, flags, lo := s.byte1(), s.byte1(), s.u32()
			out = appendU32(append(out, ref, flags|1), lo)
			if flags&1 != 0 {
				out = appendU32(out, s.u32())
			} else {
				out = appendU32(out, maxTableEntries)
				capped = true
			}
		}
		if !capped || s.err != nil {
			return code
		}
		out = append(out, s.b...) // what follows the entries (wazero refuses it)
		end := len(code) - len(r.b)
		b := append(appendU32(append(append([]byte(nil), code[:start]...), 4), uint32(len(out))), out...)
		return append(b, code[end:]...)
	}
	return code
}

// checkCode checks the code section: as many bodies as its bytes can hold, and at most
// maxLocals locals in each.
func checkCode(sec []byte) error {
	s := reader{b: sec}
	n := s.u32()
	if s.err != nil {
		// Unread, the count would be 0: an empty or cut section must not pass as one without bodies.
		return fmt.Errorf("%w: function count: %v", errBadBinary, s.err)
	}
	if uint64(n) > uint64(len(sec))/2 { // a body takes at least its size and a count
		return fmt.Errorf("%w: %w", errBadBinary, longVector(fmt.Sprintf("%d function bodies in %d bytes", n, len(sec))))
	}
	all := uint64(0)
	for i := range n {
		body := reader{b: s.take(s.u32())}
		if s.err != nil {
			return fmt.Errorf("%w: code section: %v", errBadBinary, s.err)
		}
		decls := body.u32()
		total := uint64(0)
		for range decls {
			total += uint64(body.u32())
			body.byte1() // value type
			if body.err != nil {
				return fmt.Errorf("%w: function %d: locals: %v", errBadBinary, i, body.err)
			}
			if total > maxLocals {
				return fmt.Errorf("function %d declares more than %d locals", i, maxLocals)
			}
		}
		if all += total; all > maxModuleLocals {
			return fmt.Errorf("the functions declare more than %d locals in all", maxModuleLocals)
		}
		if body.err != nil {
			return fmt.Errorf("%w: function %d: %v", errBadBinary, i, body.err)
		}
	}
	return nil
}

// checkVectors runs read over a section and reports what it could not read.
func checkVectors(sec []byte, what string, read func(s *reader)) error {
	s := reader{b: sec}
	read(&s)
	if s.err != nil {
		return fmt.Errorf("%w: %s: %w", errBadBinary, what, s.err)
	}
	if len(s.b) > 0 {
		return fmt.Errorf("%w: %s: %d bytes past its entries", errBadBinary, what, len(s.b))
	}
	return nil
}

// checkTypes checks the type section: function types only (no proposal's), each with as many
// parameters and results as its bytes can hold.
func checkTypes(sec []byte) error {
	return checkVectors(sec, "type section", func(s *reader) {
		for range s.count("types", 3) {
			if f := s.byte1(); s.err == nil && f != 0x60 {
				s.fail(fmt.Sprintf("type form %#x", f))
			}
			for range s.count("parameters", 1) {
				s.valueType()
			}
			for range s.count("results", 1) {
				s.valueType()
			}
		}
	})
}

// checkElements reads the element section's segments (the eight encodings of WebAssembly 2.0).
func checkElements(s *reader) {
	for range s.count("element segments", 3) {
		flags := s.u32()
		if s.err == nil && flags > 7 {
			s.fail(fmt.Sprintf("element segment flags %d", flags))
		}
		if flags&3 == 2 {
			s.u32() // table index
		}
		if flags&1 == 0 {
			s.constExpr() // offset
		}
		if flags&3 != 0 { // element kind (0) or reference type
			if k := s.byte1(); s.err == nil && k != 0 && k != 0x70 && k != 0x6f {
				s.notCore(fmt.Sprintf("element type %#x", k))
			}
		}
		if flags&4 == 0 {
			for range s.count("function indices", 1) {
				s.u32()
			}
		} else {
			for range s.count("element expressions", 1) {
				s.constExpr()
			}
		}
	}
}

// checkData reads the data section's segments: their bytes must be there.
func checkData(s *reader) {
	for range s.count("data segments", 2) {
		switch flags := s.u32(); {
		case s.err != nil:
		case flags == 0:
			s.constExpr()
		case flags == 1:
		case flags == 2:
			s.u32() // memory index
			s.constExpr()
		default:
			s.fail(fmt.Sprintf("data segment flags %d", flags))
		}
		s.take(s.u32())
	}
}

// checkCustom reads a custom section's name and, for the "name" section, its function and
// local names (wazero decodes those, making each map at its announced size).
func checkCustom(sec []byte) error {
	s := reader{b: sec}
	if s.name() != "name" || s.err != nil {
		if s.err != nil {
			return fmt.Errorf("%w: custom section name: %w", errBadBinary, s.err)
		}
		return nil
	}
	return checkVectors(s.b, "name section", func(s *reader) {
		for len(s.b) > 0 && s.err == nil {
			id := s.byte1()
			sub := reader{b: s.take(s.u32())}
			switch id {
			case 0:
				sub.name()
			case 1:
				for range sub.count("function names", 2) {
					sub.u32()
					sub.name()
				}
			case 2:
				for range sub.count("functions' local names", 2) {
					sub.u32()
					for range sub.count("local names", 2) {
						sub.u32()
						sub.name()
					}
				}
			default:
				sub.b = nil // skipped, as wazero does
			}
			// wazero reads these three by their contents and counts their declared sizes down
			// from the section's: one whose size is not its contents' made it read on past the
			// section, into the next one's bytes as further subsections, with counts no one
			// checked (TestNameSubsectionSizes).
			switch {
			case sub.err != nil:
				s.err, s.b = longVector(fmt.Sprintf("name subsection %d: %v", id, sub.err)), nil
			case len(sub.b) > 0:
				s.err, s.b = longVector(fmt.Sprintf("name subsection %d: %d bytes past its contents", id, len(sub.b))), nil
			}
		}
	})
}

// count reads a vector's length and refuses one whose entries, of at least min bytes each,
// cannot fit in the bytes left.
func (r *reader) count(what string, min uint64) uint32 {
	n := r.u32()
	if r.err == nil && uint64(n)*min > uint64(len(r.b)) {
		r.err = longVector(fmt.Sprintf("%d %s in %d bytes", n, what, len(r.b)))
		r.b = nil
		return 0
	}
	return n
}

// longVector is the error of what wazero must not be shown, as it would allocate without bound:
// a vector (or a string) that announces more entries than its bytes can hold, or a name
// subsection whose size is not its contents'.
type longVector string

func (e longVector) Error() string { return string(e) }

// valueType reads a value type of WebAssembly 2.0.
func (r *reader) valueType() {
	switch t := r.byte1(); {
	case r.err != nil:
	case t == 0x7f, t == 0x7e, t == 0x7d, t == 0x7c, t == 0x7b, t == 0x70, t == 0x6f:
	default:
		r.notCore(fmt.Sprintf("value type %#x", t))
	}
}

// notCore fails r on an encoding beyond WebAssembly 2.0 (notCore).
func (r *reader) notCore(what string) {
	if r.err == nil {
		r.err = notCore(what)
	}
	r.b = nil
}

// notCore is the error of an encoding that WebAssembly 2.0 does not have: a proposal's (the GC
// and exception-handling proposals' reference types, tables with an initialiser, typed
// ref.null), which wazero's decoder reads whatever the features on, leaving them to validation.
// They are refused here, where reading past them would mean following those proposals.
type notCore string

func (e notCore) Error() string { return string(e) + " (beyond WebAssembly 2.0)" }

// leb skips a LEB128 of at most n bytes.
func (r *reader) leb(n int) {
	for range n {
		if c := r.byte1(); r.err != nil || c&0x80 == 0 {
			return
		}
	}
	r.fail("integer too long")
}

// constExpr skips a constant expression of WebAssembly 2.0, up to its end.
func (r *reader) constExpr() {
	for r.err == nil {
		switch op := r.byte1(); {
		case r.err != nil:
		case op == 0x0b: // end
			return
		case op == 0x41: // i32.const
			r.leb(5)
		case op == 0x42: // i64.const
			r.leb(10)
		case op == 0x43: // f32.const
			r.take(4)
		case op == 0x44: // f64.const
			r.take(8)
		case op == 0x23, op == 0xd2: // global.get, ref.func
			r.u32()
		case op == 0xd0: // ref.null
			if t := r.byte1(); r.err == nil && t != 0x70 && t != 0x6f {
				r.notCore(fmt.Sprintf("ref.null of type %#x", t))
			}
		case op == 0xfd: // v128.const
			if r.byte1() != 0x0c && r.err == nil {
				r.fail("vector instruction in a constant expression")
			}
			r.take(16)
		default:
			r.fail(fmt.Sprintf("opcode %#x in a constant expression", op))
		}
	}
}

// appendU32 appends v as an unsigned LEB128.
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
