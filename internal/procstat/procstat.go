//go:build linux

// Package procstat reads what a process costs from /proc: its process tree, its CPU times and
// its resident memory. The benchmark harness (scripts/internal/procluster) and the chaos
// harness (node's TestChaos) share it. Linux only; it imports nothing of Hydra's.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

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

// Stat is the part of /proc/PID/stat the harnesses read. Times are in clock ticks
// (ClockTick per second).
type Stat struct {
	State                        byte // R, S, D, Z (a zombie: dead, not reaped yet), …
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
	return Stat{State: f[0][0], PPID: int(num(4)), UTime: num(14), STime: num(15), CUTime: num(16), CSTime: num(17)}, nil
}

// Running reports whether pid is a process that has not ended: it exists and is not a zombie
// (ended, its parent not told yet; an orphan's new parent may never reap it).
func Running(pid int) bool {
	st, err := ReadStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
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
