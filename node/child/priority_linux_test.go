package child

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// threadSched reads the scheduling policy (stat field 41) and nice value (field 19) of every
// thread of pid. The fields are counted after the command name, which is in parentheses and
// may itself contain spaces and parentheses.
func threadSched(pid int) (map[int][2]int, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return nil, err
	}
	out := map[int][2]int{}
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
		if len(f) < 39 {
			return nil, fmt.Errorf("%s: %d fields", path, len(f))
		}
		nice, _ := strconv.Atoi(f[19-3])
		policy, _ := strconv.Atoi(f[41-3])
		tid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		out[tid] = [2]int{policy, nice}
	}
	return out, nil
}

// TestEveryThreadIdle checks docs/design.md §7 on a running child: every thread, the kernel workers
// and the runtime's own, at SCHED_IDLE (policy 5) with nice 19 — while the node (this test
// process) keeps its normal priority.
func TestEveryThreadIdle(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	h, _ := r.Hello()
	t.Logf("child priority: %s", h.Priority)
	if !strings.HasPrefix(h.Priority, "SCHED_IDLE+nice19") {
		t.Errorf("hello says %q", h.Priority)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := runUntilProgress(t, r, ctx, Chunk{ID: 1, Spec: piSpec(1<<45, 1), Range: compute.Range{Start: 0, End: 1 << 40}}, nil)
	threads, err := threadSched(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	if len(threads) < 3 {
		t.Fatalf("only %d threads", len(threads))
	}
	for tid, ps := range threads {
		if ps != [2]int{5, 19} {
			t.Errorf("thread %d: policy %d nice %d, want SCHED_IDLE (5) and 19", tid, ps[0], ps[1])
		}
	}
	t.Logf("%d child threads, all SCHED_IDLE nice 19", len(threads))
	cancel()
	if o := waitOutcome(t, ch); o.err != nil {
		t.Fatal(o.err)
	}
	own, err := threadSched(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for tid, ps := range own {
		if ps[0] == 5 {
			t.Errorf("node thread %d is SCHED_IDLE: the node must keep its priority", tid)
		}
	}
}
