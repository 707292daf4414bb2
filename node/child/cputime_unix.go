//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package child

import "golang.org/x/sys/unix"

// processCPU returns the CPU time (user + system, all threads) the process has used, in seconds.
func processCPU() (float64, bool) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, true
}
