//go:build wasip1

package main

import "unsafe"

// The Hydra ABI (docs/wasm.md): hydra_alloc gives the host a buffer for the params (Go's
// allocator owns the memory, so the host must not grow it behind Go's back), hydra_init reads
// them, hydra_map returns the value of items [lo, hi).

var params []byte

//go:wasmexport hydra_alloc
func hydraAlloc(n uint32) unsafe.Pointer {
	params = make([]byte, n)
	return unsafe.Pointer(unsafe.SliceData(params))
}

//go:wasmexport hydra_init
func hydraInit(ptr unsafe.Pointer, n uint32) {
	setParams(string(unsafe.Slice((*byte)(ptr), n)))
}

//go:wasmexport hydra_map
func hydraMap(lo, hi int64) int64 { return int64(payoffs(uint64(lo), uint64(hi))) }

func main() {}
