//go:build race

package wasm

// raceEnabled: the race detector slows wazero's compiler about tenfold (a 2 MB Go module takes
// 20 s), so tests that compile big modules use small ones instead.
const raceEnabled = true
