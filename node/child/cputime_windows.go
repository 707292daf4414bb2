package child

import "golang.org/x/sys/windows"

// processCPU returns the CPU time (user + kernel, all threads) the process has used, in seconds.
func processCPU() (float64, bool) {
	var c, e, k, u windows.Filetime
	if windows.GetProcessTimes(windows.CurrentProcess(), &c, &e, &k, &u) != nil {
		return 0, false
	}
	ticks := func(f windows.Filetime) float64 { return float64(uint64(f.HighDateTime)<<32 | uint64(f.LowDateTime)) }
	return (ticks(k) + ticks(u)) / 1e7, true // 100 ns units
}
