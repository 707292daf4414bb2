//go:build linux

package procluster

// The process registry, process trees and /proc accounting.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// Descendants lists the PIDs under pid (children, grandchildren, …), from the parent PIDs in
// /proc/*/stat. Processes that end while it reads are left out.
func Descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int][]int{}
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(c); err == nil {
			parent[st.PPID] = append(parent[st.PPID], c)
		}
	}
	var out []int
	for q := []int{pid}; len(q) > 0; q = q[1:] {
		for _, c := range parent[q[0]] {
			out = append(out, c)
			q = append(q, c)
		}
	}
	return out
}

// ClockTick is USER_HZ, the unit of the times in /proc/PID/stat: 100 on every Linux ABI Go
// supports (the kernel's own HZ may differ; this does not).
const ClockTick = 100

// Stat is the part of /proc/PID/stat the benchmarks read. Times are in clock ticks
// (ClockTick per second).
type Stat struct {
	PPID                         int
	UTime, STime, CUTime, CSTime int64 // CUTime, CSTime: children the process has reaped
}

// CPU returns the process's own CPU time (user + system) in seconds.
func (s Stat) CPU() float64 { return float64(s.UTime+s.STime) / ClockTick }

// Reaped returns the CPU time of the children the process has waited for, in seconds.
func (s Stat) Reaped() float64 { return float64(s.CUTime+s.CSTime) / ClockTick }

// ReadStat reads /proc/PID/stat. The command name (field 2) may hold spaces and parentheses,
// so the fields are counted from the last ')'.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return Stat{PPID: int(num(4)), UTime: num(14), STime: num(15), CUTime: num(16), CSTime: num(17)}, nil
}

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
// processes that is.
func RSSKB(pid int) (total, own int64, n int) {
	ps := append([]int{pid}, Descendants(pid)...)
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					v, _ := strconv.ParseInt(f[1], 10, 64)
					total += v
					if p == pid {
						own = v
					}
				}
			}
		}
	}
	return total, own, len(ps)
}

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
