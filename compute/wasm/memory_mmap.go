//go:build linux || darwin || freebsd

package wasm

import (
	"math/bits"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryAllocator reserves each instance's linear memory up to its cap at once, as address
// space only (an anonymous private mapping: the kernel gives a page its memory when the module
// first touches it), so memory.grow is free. wazero's own growth appends to a Go slice, which
// copies the memory again and again and faults fresh pages in on every copy: a module growing
// to the 128 MiB cap took seconds of CPU, long enough for the compute child to take it for an
// endless loop. 32-bit builds keep wazero's growth (their address space is small).
func memoryAllocator() experimental.MemoryAllocator {
	if bits.UintSize < 64 {
		return nil
	}
	return experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
		if max > 0 && max <= 1<<32 {
			if b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON); err == nil {
				return &mappedMemory{buf: b}
			}
		}
		return &sliceMemory{buf: make([]byte, 0, cap), max: max}
	})
}

// mappedMemory is a linear memory in a mapping of its maximum size.
type mappedMemory struct{ buf []byte }

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

// Free unmaps the memory: wazero calls it when the instance is closed, never during a call.
func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// sliceMemory is a linear memory in a Go slice that doubles its capacity as it grows (up to
// max): the fallback when a mapping fails.
type sliceMemory struct {
	buf []byte
	max uint64
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if c := uint64(cap(m.buf)); size > c {
		nb := make([]byte, size, min(max(2*c, size), m.max))
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }
