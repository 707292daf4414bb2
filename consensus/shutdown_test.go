package consensus

import (
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// holdingApp blocks in Snapshot, which runs on raft's FSM goroutine with no lock of the FSM
// held, until release is closed: a test keeps that goroutine busy while entries are committed
// behind it, and the node's readers of the state still run.
type holdingApp struct {
	held    chan struct{} // closed when Snapshot holds
	release chan struct{}
}

func (a *holdingApp) Apply(op byte, payload []byte, index uint64) any { return nil }
func (a *holdingApp) Restore(r io.Reader) error                       { return nil }

func (a *holdingApp) Snapshot(w io.Writer) error {
	close(a.held)
	<-a.release
	return nil
}

// hashicorp/raft leaves a future unanswered for ever when it shuts down with the entry
// committed and waiting for its FSM goroutine (hashicorp/raft#498): that goroutine stops
// without taking the queued entries. A goroutine of ours waiting on such a future kept
// Shutdown, which waits for all of them, from returning: CI saw a node hang 10 minutes in
// Shutdown with a follower nudge (a Barrier) unanswered. Here the FSM goroutine is held in a
// snapshot while barriers are committed behind it in separate rounds, the nudge's last; raft is shut
// down and the FSM let go: it takes each queued round only if it does not see the shutdown
// first, so the nudge's barrier is almost surely never answered, and Shutdown must still
// return.
func Test_Shutdown_ReturnsWithAFutureRaftNeverAnswers(t *testing.T) {
	t.Parallel()
	app := &holdingApp{held: make(chan struct{}), release: make(chan struct{})}
	nodes := startCluster(t, 1, "unanswered", func(i int, c *Config) { c.App = app })
	n := waitAgreed(t, nodes)
	released := false
	defer func() {
		if !released {
			close(app.release)
		}
	}()
	go func() { _ = n.r.raft.Snapshot().Error() }() // answered when raft shuts down
	select {
	case <-app.held:
	case <-ctxT(t, testDeadline).Done():
		t.Fatal("the snapshot never reached the App")
	}
	committed := func(what string) {
		t.Helper()
		waitUntil(t, testDeadline, what+" committed", func() error {
			if c, l := n.r.raft.CommitIndex(), n.r.raft.LastIndex(); c < l {
				return fmt.Errorf("commit index %d, last index %d", c, l)
			}
			return nil
		})
	}
	for i := range 16 { // each in a round of its own: one batch each for the FSM goroutine
		before := n.r.raft.LastIndex()
		n.r.raft.Barrier(0) // not waited for
		waitUntil(t, testDeadline, fmt.Sprintf("barrier %d written", i), func() error {
			if l := n.r.raft.LastIndex(); l <= before {
				return fmt.Errorf("last index %d", l)
			}
			return nil
		})
		committed(fmt.Sprintf("barrier %d", i))
	}
	before := n.r.raft.LastIndex()
	n.r.nudgeFollowers() // a goroutine Shutdown waits for, waiting on a Barrier
	waitUntil(t, testDeadline, "the nudge's barrier written", func() error {
		if l := n.r.raft.LastIndex(); l <= before {
			return fmt.Errorf("last index %d", l)
		}
		return nil
	})
	committed("the nudge's barrier")

	down := make(chan struct{})
	go func() {
		defer close(down)
		n.kill()
	}()
	waitUntil(t, testDeadline, "raft shutting down", func() error {
		if s := n.r.raft.State(); s != raft.Shutdown {
			return fmt.Errorf("raft is %s", s)
		}
		return nil
	})
	released = true
	close(app.release)
	select {
	case <-down:
	case <-ctxT(t, testDeadline).Done():
		t.Fatalf("Shutdown has not returned after %s: a goroutine of the node waits on a future raft will not answer", testDeadline)
	}
}
