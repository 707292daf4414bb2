package wasm

import "runtime"

// CompilerRefused reports whether modules in this process run in wazero's interpreter although
// the platform has its compiler: the process may not make memory executable. wazero compiles a
// module to machine code in memory it then maps executable, and falls back to its interpreter,
// silently, when that is refused — about 50× slower (examples/primes: 0.25 s compiled, 14 s
// interpreted, for 200,000 items). systemd's MemoryDenyWriteExecute=yes, prctl PR_SET_MDWE and
// an SELinux policy that denies execmem refuse it, and they hold for the compute child too. The
// node says so in its log at start (docs/wasm.md).
func CompilerRefused() bool {
	switch runtime.GOARCH {
	case "amd64", "arm64":
		return !execMemoryAllowed()
	}
	return false // wazero has no compiler here: the interpreter is the only engine
}
