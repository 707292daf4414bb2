//go:build !(linux || darwin || freebsd)

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is wazero's own growth where no anonymous mapping is at hand (memory_mmap.go).
func memoryAllocator() experimental.MemoryAllocator { return nil }
