package child

import (
	"context"
	"fmt"
	"os"
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

// dutyRatio runs a long π task on one CPU at the given limit and returns the child's CPU time
// over a window of about 2 s, divided by the window.
func dutyRatio(t testing.TB, limit int) float64 {
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
	w0 := time.Now()
	for range 8 { // progress ticks are the clock: 8 × 250 ms
		<-ticks
	}
	c1, _ := procCPU(h.PID)
	wall := time.Since(w0).Seconds()
	cancel()
	<-ch
	return (c1 - c0) / wall
}

// TestCPULimitDutyCycle checks --cpu-limit: at 25 % the child uses about a quarter of its CPU.
// The machine is shared and the child runs at idle priority, so the bounds are wide: the upper
// bound always holds (the limit's promise); the lower one, on the ratio to an unlimited run
// just before, is only checked when that run got a fair share of a core (otherwise the machine
// is busy and starves the idle-priority child whatever its limit).
func TestCPULimitDutyCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	full := dutyRatio(t, 100)
	quarter := dutyRatio(t, 25)
	t.Logf("CPU use of one worker: %.0f %% unlimited, %.0f %% at --cpu-limit 25 (ratio %.2f)", 100*full, 100*quarter, quarter/full)
	if quarter > 0.45 {
		t.Errorf("--cpu-limit 25 used %.0f %% of a core", 100*quarter)
	}
	if full >= 0.3 && quarter/full < 0.10 {
		t.Errorf("--cpu-limit 25 used only %.0f %% of a core while unlimited got %.0f %%", 100*quarter, 100*full)
	}
}
