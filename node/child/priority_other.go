//go:build !linux && !darwin && !windows

package child

import "runtime"

// Other systems: no idle class is known to Hydra here; the child runs at the priority it
// inherited, and says so in its hello.

func lowerPriority() string { return "unchanged (no idle priority on " + runtime.GOOS + ")" }

func sweepThreads() (int, error) { return 0, nil }

func lowerThisThread() {}
