//go:build unix

package child

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// Close returns, the child gone, when the child reads its stdin no more (stopped here with
// SIGSTOP; wedged would do) and the pipe to it is full: the exit message cannot be written,
// and Close kills the child after exitTimeout. It waited for that write for ever, and the
// node's stop (Run closes the compute process) with it. The pipe is filled by a write standing
// for any message sent to such a child, which holds the child's writer lock as a send does.
func TestCloseChildNotReadingWithFullPipe(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	p := childOf(t, r)
	stopWithFullPipe(t, p)
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(exitTimeout + 20*time.Second):
		t.Fatal("Close did not return: it waits to write to a child that reads no more")
	}
	if !p.exited() {
		t.Fatal("Close returned with the child still there")
	}
}

// A task whose context ends while its child reads its stdin no more with the pipe full (stopped
// here with SIGSTOP) ends once stopTimeout has passed, the child killed: the stop message
// cannot be written, and Run waited for that write for ever, holding the worker's stop and with
// it the node's (SIGTERM stops the chunk in hand first).
func TestRunStopsWithChildNotReadingAndFullPipe(t *testing.T) {
	old := stopTimeout
	stopTimeout = 2 * time.Second
	t.Cleanup(func() { stopTimeout = old })
	r := startRunner(t, "child", 1, 0)
	p := childOf(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progressed := make(chan struct{}, 1)
	ran := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, Chunk{ID: 1, Spec: piSpec(1<<40, 3), Range: compute.Range{Start: 0, End: 1 << 40}},
			func(uint64) {
				select {
				case progressed <- struct{}{}:
				default:
				}
			})
		ran <- err
	}()
	select { // the child computes the task: it read the run message
	case <-progressed:
	case err := <-ran:
		t.Fatalf("the task ended before it was stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no progress from the child")
	}
	stopWithFullPipe(t, p)
	cancel()
	select {
	case err := <-ran:
		if err == nil {
			t.Fatal("a task killed at its stop deadline returned no error")
		}
	case <-time.After(stopTimeout + 20*time.Second):
		t.Fatal("Run did not return: it waits to write its stop to a child that reads no more")
	}
}

// childOf returns r's child process, killed when the test ends if the code under test did not.
func childOf(t *testing.T, r *Runner) *proc {
	t.Helper()
	r.mu.Lock()
	p := r.p
	r.mu.Unlock()
	if p == nil {
		t.Fatal("no child after Start")
	}
	pid := p.cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return p
}

// stopWithFullPipe stops p's child (SIGSTOP: it reads its stdin no more) and fills the pipe to
// it with a write that holds the child's writer lock, as a send to such a child does; it
// returns once the write holds the lock, which it then does until the child is gone.
func stopWithFullPipe(t *testing.T, p *proc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		_, _ = p.stdin.Write(make([]byte, 4<<20)) // more than any pipe holds: it blocks
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.wmu.TryLock() {
		p.wmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the write to the stopped child never started")
		}
		time.Sleep(5 * time.Millisecond) // polls the lock: nothing to wait on
	}
}
