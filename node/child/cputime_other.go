//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package child

// processCPU is unknown here: compute seconds fall back to wall time × workers.
func processCPU() (float64, bool) { return 0, false }
