//go:build linux

package procluster

// The process registry, process trees and /proc accounting.

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/hydra-compute/hydra/internal/procstat"
)

var (
	trackedMu sync.Mutex
	tracked   = map[*exec.Cmd]bool{}
)

// StartTracked starts c with Pdeathsig=SIGKILL (the kernel kills it if this program dies, even
// by SIGKILL) and records it for KillAll, so that no benchmark process outlives the program on
// any path: normal exit, fatal error or signal. c stays in this program's process group, which
// the scripts/bench-* wrappers kill whole as a last resort. The caller must Untrack c once it
// has waited for it.
func StartTracked(c *exec.Cmd) error {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	trackedMu.Lock()
	defer trackedMu.Unlock()
	// Started under the lock, so that a KillAll running at the same time either sees c or
	// runs before it exists.
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.Path, err)
	}
	tracked[c] = true
	return nil
}

// Untrack forgets c (after Wait returned): KillAll must not signal a PID that may since have
// been reused.
func Untrack(c *exec.Cmd) {
	trackedMu.Lock()
	defer trackedMu.Unlock()
	delete(tracked, c)
}

// KillAll SIGKILLs every tracked process and everything under it (a node's compute child).
// Programs call it on every way out; it does not wait for the processes.
func KillAll() {
	trackedMu.Lock()
	defer trackedMu.Unlock()
	for c := range tracked {
		KillTree(c)
	}
}

// KillTree SIGKILLs c's process and its descendants. The descendants are listed before the
// process dies, because once it is dead they are reparented and can no longer be found from
// it. It does not wait for c.
func KillTree(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	kids := Descendants(c.Process.Pid)
	_ = c.Process.Kill()
	for _, d := range kids {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
}

// Descendants lists the PIDs under pid (procstat.Descendants).
func Descendants(pid int) []int { return procstat.Descendants(pid) }

// ClockTick is USER_HZ, the unit of the times in /proc/PID/stat (procstat.ClockTick).
const ClockTick = procstat.ClockTick

// Stat is the part of /proc/PID/stat the benchmarks read (procstat.Stat).
type Stat = procstat.Stat

// ReadStat reads /proc/PID/stat (procstat.ReadStat).
func ReadStat(pid int) (Stat, error) { return procstat.ReadStat(pid) }

// CPUTicks is the CPU time of pid and its descendants, and of the children they reaped, in
// clock ticks: what a node costs with its compute child.
func CPUTicks(pid int) int64 {
	var t int64
	for _, p := range append([]int{pid}, Descendants(pid)...) {
		if s, err := ReadStat(p); err == nil {
			t += s.UTime + s.STime + s.CUTime + s.CSTime
		}
	}
	return t
}

// RSSKB is the VmRSS of pid and its descendants in KiB (total, and pid's own), and how many
// processes that is (procstat.RSSKB).
func RSSKB(pid int) (total, own int64, n int) { return procstat.RSSKB(pid) }

// LoadAvg returns the 1, 5 and 15 minute load averages as /proc/loadavg writes them, or "?".
// The benchmarks print it beside their figures because the machine may be shared.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
