// Package wasm runs WebAssembly modules for Hydra's wasm jobs (docs/wasm.md): it validates a module
// (allow-listed imports only, no threads, the hydra_map export), compiles it with wazero (cached on
// disk when a directory is given), and maps it over an item range on several instances at once,
// keeping the finished prefix exact when stopped and reducing the partial values with
// compute.Reduce.
//
// Unlike package compute, it reads the clock: blocks of items are sized from measured speed, and
// calls run under a deadline. The sandbox is wazero's: a module reaches nothing outside its memory
// but the WASI functions listed in docs/wasm.md (no preopened directory, no environment, a fake
// clock, a seeded random stream) and hydra.emit.
package wasm
