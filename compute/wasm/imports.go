package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Import is one entry of a module's import section.
type Import struct {
	Module, Name string
	Kind         byte // 0 function, 1 table, 2 memory, 3 global, 4 tag
}

func (i Import) String() string {
	kinds := [...]string{"function", "table", "memory", "global", "tag"}
	k := "import"
	if int(i.Kind) < len(kinds) {
		k = kinds[i.Kind]
	}
	return fmt.Sprintf("%s %s.%s", k, i.Module, i.Name)
}

// wasiAllowed lists the WASI preview 1 functions a module may import: those the Go (wasip1) and
// wasi-libc runtimes call at start-up or to print, answered harmlessly: no arguments, no
// environment, no preopened directory (so no path can be opened), stdin at end of file,
// stdout/stderr kept (bounded) only to explain a failure, a fixed fake clock, sleeps that return
// at once, and a seeded random stream. Anything that names a path or a socket is refused before
// the module runs.
var wasiAllowed = map[string]bool{
	"args_get": true, "args_sizes_get": true,
	"environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true,
	"fd_write": true, "fd_read": true, "fd_close": true, "fd_seek": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true, "fd_filestat_get": true,
	"fd_prestat_get": true, "fd_prestat_dir_name": true, "fd_sync": true,
	"proc_exit": true, "random_get": true, "sched_yield": true, "poll_oneoff": true,
}

// Module names of the imports a module may use.
const (
	wasiModule  = "wasi_snapshot_preview1"
	hydraModule = "hydra"
)

// checkImports refuses any import outside the allow-list: WASI functions in wasiAllowed and
// hydra.emit. Tables, memories, globals and tags cannot be imported at all. The error names every
// offending import, so a user sees at once why the module was refused.
func checkImports(imps []Import) error {
	var bad []string
	for _, im := range imps {
		ok := im.Kind == 0 && ((im.Module == wasiModule && wasiAllowed[im.Name]) ||
			(im.Module == hydraModule && im.Name == "emit"))
		if !ok {
			bad = append(bad, im.String())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	if len(bad) > 8 {
		bad = append(bad[:8], fmt.Sprintf("and %d more", len(bad)-8))
	}
	return fmt.Errorf("%w: %s (a module may import only hydra.emit and the WASI functions of docs/wasm.md: no files, sockets or environment)",
		ErrForbiddenImport, strings.Join(bad, ", "))
}

// ErrForbiddenImport is wrapped by the error of a module that imports something the sandbox does
// not offer (a file, a socket, a host function of another runtime).
var ErrForbiddenImport = errors.New("forbidden import")

// errBadBinary is wrapped by parse errors of the module binary (its format, version 1, is that of
// WebAssembly 1.0 and 2.0 alike: "1.0" in the message read as a refusal of 2.0 modules).
var errBadBinary = errors.New("not a valid WebAssembly binary")

// parseImports lists the import section of a module binary. It reads only the section framing
// and the import entries (the rest is validated by the compiler), allocates at most in
// proportion to the input, and never panics: it is fed untrusted uploads (FuzzParseImports).
func parseImports(b []byte) ([]Import, error) {
	sec, ok, err := section(b, 2)
	if err != nil || !ok {
		return nil, err
	}
	return importSection(sec)
}

// section returns the contents of b's first section of the given id (ok false if it has none),
// checking the header and every section's size before it on the way.
func section(b []byte, id byte) (sec []byte, ok bool, err error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || binary.LittleEndian.Uint32(b[4:8]) != 1 {
		return nil, false, fmt.Errorf("%w: bad magic or version", errBadBinary)
	}
	r := reader{b: b[8:]}
	for len(r.b) > 0 {
		got := r.byte1()
		sec := r.take(r.u32())
		if r.err != nil {
			return nil, false, fmt.Errorf("%w: section %d: %w", errBadBinary, got, r.err)
		}
		if got == id {
			return sec, true, nil
		}
	}
	return nil, false, nil
}

// ExportsFunction reports whether a module exports a function named name. A node checks a job
// against its module at submit with it, without compiling (a module with params for a hydra_init
// it does not export would fail every chunk on every node); code is a stored module, validated
// when it was stored, but a binary it cannot read is an error, not a panic.
func ExportsFunction(code []byte, name string) (bool, error) {
	sec, ok, err := section(code, 7)
	if err != nil || !ok {
		return false, err
	}
	s := reader{b: sec}
	for range s.count("exports", 3) {
		n, kind := s.name(), s.byte1()
		s.u32()
		if s.err == nil && kind == 0 && n == name {
			return true, nil
		}
	}
	if s.err != nil {
		return false, fmt.Errorf("%w: export section: %w", errBadBinary, s.err)
	}
	return false, nil
}

// importSection reads the entries of an import section.
func importSection(sec []byte) ([]Import, error) {
	s := reader{b: sec}
	n := s.u32()
	if s.err != nil {
		// Unread, the count would be 0: a cut section must not pass as one without imports.
		return nil, fmt.Errorf("%w: import count: %v", errBadBinary, s.err)
	}
	if uint64(n) > uint64(len(sec)) {
		return nil, fmt.Errorf("%w: %w", errBadBinary, longVector(fmt.Sprintf("%d imports in %d bytes", n, len(sec))))
	}
	imps := make([]Import, 0, n)
	for range n {
		im := Import{Module: s.name(), Name: s.name(), Kind: s.byte1()}
		switch im.Kind {
		case 0: // function: type index
			s.u32()
		case 1: // table: reference type, limits
			s.byte1()
			s.limits()
		case 2: // memory: limits
			s.limits()
		case 3: // global: value type, mutability
			s.byte1()
			s.byte1()
		case 4: // tag: attribute, type index
			s.byte1()
			s.u32()
		default:
			return nil, fmt.Errorf("%w: import %q.%q of unknown kind %d", errBadBinary, im.Module, im.Name, im.Kind)
		}
		if s.err != nil {
			return nil, fmt.Errorf("%w: import section: %w", errBadBinary, s.err)
		}
		imps = append(imps, im)
	}
	return imps, nil
}

// reader decodes the LEB128 and length-prefixed parts of a module binary; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = errors.New(msg)
	}
	r.b = nil
}

func (r *reader) byte1() byte {
	if len(r.b) < 1 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *reader) u32() uint32 {
	var v uint64
	for i := 0; i < 5; i++ {
		c := r.byte1()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if v > 0xffffffff {
				r.fail("integer too large")
				return 0
			}
			return uint32(v)
		}
	}
	r.fail("integer too long")
	return 0
}

func (r *reader) take(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = longVector(fmt.Sprintf("%d bytes past the end", uint64(n)-uint64(len(r.b))))
		r.b = nil
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) name() string { return string(r.take(r.u32())) }

// limits skips memory or table limits; flags 0x2/0x3 mark shared memory (threads), refused
// later by the compiler since that feature is off, 0x4–0x7 memory64.
func (r *reader) limits() {
	f := r.byte1()
	if f&0x4 != 0 {
		r.fail("64-bit limits")
		return
	}
	r.u32()
	if f&1 != 0 {
		r.u32()
	}
}
