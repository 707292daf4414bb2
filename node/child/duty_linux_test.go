package child

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// procCPU returns utime+stime of a process (all its threads) from /proc/<pid>/stat, in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
	ut, _ := strconv.ParseFloat(f[14-3], 64)
	st, _ := strconv.ParseFloat(f[15-3], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on every Linux ABI Go supports
}

// machineIdle returns the idle time of all the machine's CPUs together (idle and iowait in
// /proc/stat), in seconds.
func machineIdle() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	idle, err1 := strconv.ParseFloat(f[4], 64)
	iowait, err2 := strconv.ParseFloat(f[5], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	return (idle + iowait) / 100, nil
}

// dutyRatio runs a long π task on one CPU at the given limit and returns the child's CPU time
// over a window of about 2 s, divided by the window, and the machine's idle CPU over the same
// window, in cores (2 on an idle 2-core machine).
func dutyRatio(t testing.TB, limit int) (ratio, spare float64) {
	r := startRunner(t.(*testing.T), "child", 1, limit)
	h, _ := r.Hello()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan struct{}, 100)
	ch := runUntilProgress(t.(*testing.T), r, ctx, Chunk{ID: 1, Spec: piSpec(1<<45, 1), Range: compute.Range{Start: 0, End: 1 << 40}},
		func(uint64) { ticks <- struct{}{} })
	c0, err := procCPU(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	i0, err := machineIdle()
	if err != nil {
		t.Fatal(err)
	}
	w0 := time.Now()
	for range 8 { // progress ticks are the clock: 8 × 250 ms
		<-ticks
	}
	c1, _ := procCPU(h.PID)
	i1, _ := machineIdle()
	wall := time.Since(w0).Seconds()
	cancel()
	<-ch
	return (c1 - c0) / wall, (i1 - i0) / wall
}

// TestCPULimitDutyCycle checks --cpu-limit: at 25 % the child uses about a quarter of its CPU.
// The machine is shared and the child runs at idle priority, so the bounds are wide: the upper
// bound always holds (the limit's promise); the lower one, on the ratio to an unlimited run
// just before, is only checked when both runs could have their share: the unlimited one got a
// fair share of a core, and half the machine's cores were idle on average while the limited one
// ran. A busy machine starves the idle-priority child whatever its limit, and the load of a
// shared machine changes between the two runs (other packages' tests start and end): an idle
// machine during the first run says nothing of the second.
func TestCPULimitDutyCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	full, _ := dutyRatio(t, 100)
	quarter, spare := dutyRatio(t, 25)
	t.Logf("CPU use of one worker: %.0f %% unlimited, %.0f %% at --cpu-limit 25 (ratio %.2f); %.2f of %d cores idle meanwhile",
		100*full, 100*quarter, quarter/full, spare, runtime.NumCPU())
	if quarter > 0.45 {
		t.Errorf("--cpu-limit 25 used %.0f %% of a core", 100*quarter)
	}
	if full >= 0.3 && spare >= float64(runtime.NumCPU())/2 && quarter/full < 0.10 {
		t.Errorf("--cpu-limit 25 used only %.0f %% of a core while unlimited got %.0f %%", 100*quarter, 100*full)
	}
}

// TestCPULimitNoBurstAfterIdle checks that a limited child that sat idle between tasks starts
// the next one at its limit: the idle time earns no budget, and what the child was owed for
// preemption before the pause is dropped (gate.busy), so a short task after a pause takes about
// its CPU time ÷ the limit, not its CPU time on a second's credit, whatever the machine's load
// was during the first task.
func TestCPULimitNoBurstAfterIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	const limit = 10
	r := startRunner(t, "child", 1, limit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A first task brings the budget up to date and measures the kernel's speed.
	const n1 = 1 << 24
	first, err := r.Run(ctx, Chunk{ID: 1, Spec: piSpec(1<<40, 3), Range: compute.Range{Start: 0, End: n1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The second task: about 60 ms of CPU, well within what a second's credit at 10 % covered
	// (100 ms) and well beyond idleCredit's 10 ms, even if the first task's speed was off by 2×
	// (a shared machine).
	n2 := uint64(max(float64(n1)*0.06/max(first.ComputeSeconds, 1e-3), 1<<20))
	// The scenario, not a synchronisation: the child has nothing to compute for 1.5 s, which
	// used to earn it a full second's budget (maxCredit at 10 %: 100 ms of CPU).
	time.Sleep(1500 * time.Millisecond)
	t0 := time.Now()
	res, err := r.Run(ctx, Chunk{ID: 2, Spec: piSpec(1<<40, 3), Range: compute.Range{Start: n1, End: n1 + n2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(t0).Seconds()
	share := res.ComputeSeconds / wall
	t.Logf("after 1.5 s idle: %.3f CPU s in %.3f s of wall time at --cpu-limit %d: %.0f %% of a core", res.ComputeSeconds, wall, limit, 100*share)
	// At the limit the share is about 10 % (plus idleCredit's 10 ms and a poll's overshoot),
	// whatever the task's size; on a second's credit a task of under 0.1 CPU s ran flat out.
	if share > 0.35 {
		t.Errorf("after an idle pause the child used %.0f %% of a core at --cpu-limit %d", 100*share, limit)
	}
}
