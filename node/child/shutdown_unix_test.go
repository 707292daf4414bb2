//go:build unix

package child

import (
	"syscall"
	"testing"
	"time"
)

// Close returns, the child gone, when the child reads its stdin no more (stopped here with
// SIGSTOP; wedged would do) and the pipe to it is full: the exit message cannot be written,
// and Close kills the child after exitTimeout. It waited for that write for ever, and the
// node's stop (Run closes the compute process) with it. The pipe is filled by a write standing
// for any message sent to such a child, which holds the child's writer lock as a send does.
func TestCloseChildNotReadingWithFullPipe(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	r.mu.Lock()
	p := r.p
	r.mu.Unlock()
	if p == nil {
		t.Fatal("no child after Start")
	}
	pid := p.cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // if Close did not
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		_, _ = p.stdin.Write(make([]byte, 4<<20)) // more than any pipe holds: it blocks
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.wmu.TryLock() { // until the write holds it, which it then does until the child is gone
		p.wmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the write to the stopped child never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
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
