//go:build unix

package child

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestChildOutlivesTheNodesStopSignals: SIGHUP (the terminal or SSH session a node ran in
// closed), SIGTERM and SIGINT sent to the whole process group reach the compute child too. The
// node stops gracefully on them and keeps the finished prefix of the chunk in hand; the child
// must leave that to the node. It ignored only SIGINT, so a closed terminal killed it mid-chunk
// ("compute child exited: signal: hangup") and the chunk's work was lost. Here the signals reach
// a child computing a task; the task's stop then returns its prefix, and the same child takes
// the next task.
func TestChildOutlivesTheNodesStopSignals(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	p := childOf(t, r)
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progressed := make(chan struct{}, 1)
	type ran struct {
		res Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := r.Run(ctx, Chunk{ID: 1, Spec: piSpec(1<<40, 5), Range: compute.Range{Start: 0, End: 1 << 40}},
			func(uint64) {
				select {
				case progressed <- struct{}{}:
				default:
				}
			})
		done <- ran{res, err}
	}()
	select { // the child computes the task
	case <-progressed:
	case d := <-done:
		t.Fatalf("the task ended before any signal: %v", d.err)
	case <-time.After(30 * time.Second):
		t.Fatal("no progress from the child")
	}
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		if err := syscall.Kill(pid, s); err != nil {
			t.Fatalf("signal %v to the child: %v", s, err)
		}
	}
	cancel() // the node's decision: stop the chunk and keep its prefix
	select {
	case d := <-done:
		if d.err != nil {
			t.Fatalf("the task's stop after the signals: %v (the child died of one)", d.err)
		}
		if d.res.Done.Empty() {
			t.Fatal("the stopped task handed in no prefix")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its stop")
	}
	res, err := r.Run(context.Background(), Chunk{ID: 2, Spec: piSpec(1<<20, 5), Range: compute.Range{Start: 0, End: 1 << 20}}, nil)
	if err != nil {
		t.Fatalf("the next task: %v", err)
	}
	if res.Done.Len() != 1<<20 {
		t.Fatalf("the next task did %v of %d samples", res.Done, 1<<20)
	}
	if q := childOf(t, r); q.cmd.Process.Pid != pid {
		t.Fatalf("the next task ran in a new child (pid %d, was %d): the first died of a signal", q.cmd.Process.Pid, pid)
	}
}
