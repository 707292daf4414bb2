package wasm

import "fmt"

// Limits of a module's declarations, checked before the compiler sees it (checkBounds). The
// compiler (wazero) allocates what a declaration announces, before and apart from the memory
// limit of a running instance: a function body that declares 2³²−1 locals takes 7 bytes and
// made it allocate 4 GiB in the node process that validates an upload, and a table may be
// declared, or grown, to 2²⁷ entries of 8 bytes each in the compute child.
const (
	// maxLocals bounds the locals a function declares (the figure browsers' engines use).
	maxLocals = 50_000
	// maxTableEntries bounds a table's declared minimum and maximum: the function tables of
	// compiled Go, Rust and C programs hold their functions' count, thousands.
	maxTableEntries = 1 << 20
)

// checkBounds refuses a module whose code section or tables announce more than the limits above.
// It reads only section framing, the code section's local declarations and the table section,
// allocates nothing in proportion to what the input announces, and never panics: it is fed
// untrusted uploads (FuzzCheckBounds).
func checkBounds(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: truncated", errBadBinary)
	}
	r := reader{b: b[8:]}
	for len(r.b) > 0 {
		id := r.byte1()
		sec := r.take(r.u32())
		if r.err != nil {
			return fmt.Errorf("%w: section %d: %v", errBadBinary, id, r.err)
		}
		var err error
		switch id {
		case 4:
			err = checkTables(sec)
		case 10:
			err = checkCode(sec)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkTables checks the table section's declared sizes (a table with no maximum may still grow
// at run time; the compute child's memory limit is what bounds that).
func checkTables(sec []byte) error {
	s := reader{b: sec}
	n := s.u32()
	if s.err != nil {
		return fmt.Errorf("%w: table count: %v", errBadBinary, s.err)
	}
	if uint64(n) > uint64(len(sec)) {
		return fmt.Errorf("%w: %d tables in %d bytes", errBadBinary, n, len(sec))
	}
	for i := range n {
		s.byte1() // reference type
		flags := s.byte1()
		if flags&^1 != 0 {
			return fmt.Errorf("%w: table %d: limits flags %#x", errBadBinary, i, flags)
		}
		lo := s.u32()
		hi := lo
		if flags&1 != 0 {
			hi = s.u32()
		}
		if s.err != nil {
			return fmt.Errorf("%w: table section: %v", errBadBinary, s.err)
		}
		if lo > maxTableEntries || hi > maxTableEntries {
			return fmt.Errorf("table %d declares %d to %d entries: at most %d", i, lo, hi, maxTableEntries)
		}
	}
	return nil
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
		return fmt.Errorf("%w: %d function bodies in %d bytes", errBadBinary, n, len(sec))
	}
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
		if body.err != nil {
			return fmt.Errorf("%w: function %d: %v", errBadBinary, i, body.err)
		}
	}
	return nil
}
