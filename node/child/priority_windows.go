package child

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// On Windows the priority class belongs to the process and covers all its threads, present and
// future: IDLE_PRIORITY_CLASS runs them only when nothing else wants the CPU.

func lowerPriority() string {
	if err := windows.SetPriorityClass(windows.CurrentProcess(), windows.IDLE_PRIORITY_CLASS); err != nil {
		return fmt.Sprintf("normal (IDLE_PRIORITY_CLASS failed: %v)", err)
	}
	return "IDLE_PRIORITY_CLASS"
}

func sweepThreads() (int, error) { return 0, nil }

func lowerThisThread() {}
