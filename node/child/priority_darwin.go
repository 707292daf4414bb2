package child

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// macOS: setpriority(PRIO_DARWIN_PROCESS, 0, PRIO_DARWIN_BG) puts the whole process in the
// background band (lowest CPU priority, throttled I/O), which is what background QoS means for a
// process; nice 19 is set as well. x/sys does not name the two Darwin constants, so they are
// spelled here (sys/resource.h).
const (
	prioDarwinProcess = 4
	prioDarwinBG      = 0x1000
)

func lowerPriority() string {
	nice := unix.Setpriority(unix.PRIO_PROCESS, 0, 19)
	bg := unix.Setpriority(prioDarwinProcess, 0, prioDarwinBG)
	switch {
	case nice == nil && bg == nil:
		return "PRIO_DARWIN_BG+nice19"
	case bg == nil:
		return fmt.Sprintf("PRIO_DARWIN_BG (nice failed: %v)", nice)
	default:
		return fmt.Sprintf("nice19 only (PRIO_DARWIN_BG failed: %v; nice: %v)", bg, nice)
	}
}

func sweepThreads() (int, error) { return 0, nil }

func lowerThisThread() {}
