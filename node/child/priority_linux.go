package child

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux, scheduling policy and nice value belong to each thread, and a new thread inherits
// them from the thread that creates it. The child therefore sets SCHED_IDLE + nice 19 on every
// thread listed in /proc/self/task, again and again until a pass finds no thread it has not
// seen (a thread created during a pass by a thread not yet lowered is caught by the next one).
// From then on every new thread descends from a lowered one. Kernel workers also lower their
// own locked thread (lowerThisThread), and the progress ticker sweeps again, so the invariant
// is checked rather than assumed.

var sweepMu sync.Mutex

// setIdle puts thread tid at nice 19 and SCHED_IDLE. The nice value goes first, on its own:
// sched_setattr applies sched_nice only to SCHED_NORMAL and SCHED_BATCH, and a later switch to
// SCHED_IDLE keeps it. Kernels before 3.14 have no sched_setattr: sched_setscheduler then.
func setIdle(tid int) error {
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // the thread has exited
		}
		return fmt.Errorf("setpriority: %w", err)
	}
	attr := unix.SchedAttr{Policy: unix.SCHED_IDLE, Nice: 19}
	err := unix.SchedSetAttr(tid, &attr, 0)
	if err == nil || errors.Is(err, unix.ESRCH) {
		return nil
	}
	var param int32 // struct sched_param { int sched_priority; } = 0 for SCHED_IDLE
	if _, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(tid), unix.SCHED_IDLE, uintptr(unsafe.Pointer(&param))); e != 0 && e != unix.ESRCH {
		return fmt.Errorf("sched_setattr: %v; sched_setscheduler: %w", err, e)
	}
	return nil
}

func listThreads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	slices.Sort(tids)
	return tids, nil
}

// sweepThreads lowers every thread of the process until the thread list is stable. It returns
// the number of threads and the first error.
func sweepThreads() (int, error) {
	sweepMu.Lock()
	defer sweepMu.Unlock()
	var prev []int
	var first error
	for range 16 {
		tids, err := listThreads()
		if err != nil {
			return 0, err
		}
		for _, tid := range tids {
			if err := setIdle(tid); err != nil && first == nil {
				first = fmt.Errorf("thread %d: %w", tid, err)
			}
		}
		if slices.Equal(tids, prev) {
			return len(tids), first
		}
		prev = tids
	}
	return len(prev), first
}

// lowerThisThread lowers the calling (locked) thread.
func lowerThisThread() { _ = setIdle(unix.Gettid()) }

// lowerPriority lowers the whole process and says what it obtained, for the hello.
func lowerPriority() string {
	n, err := sweepThreads()
	attr, gerr := unix.SchedGetAttr(0, 0)
	nice, nerr := unix.Getpriority(unix.PRIO_PROCESS, 0) // the raw syscall: 20 − nice
	switch {
	case err == nil && gerr == nil && nerr == nil && attr.Policy == unix.SCHED_IDLE && nice == 1:
		return fmt.Sprintf("SCHED_IDLE+nice19 on %d threads", n)
	case gerr == nil && nerr == nil:
		return fmt.Sprintf("policy %d nice %d on %d threads (%v)", attr.Policy, 20-nice, n, err)
	default:
		return fmt.Sprintf("unknown (%v; %v; %v)", err, gerr, nerr)
	}
}
