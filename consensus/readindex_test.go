package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// TestReadIndex: the leader's read index is that of its last command committed, not of the
// barrier trailing it (a follower learns of that barrier's commit only at the next
// CommitTimeout, seconds later: a read barrier on it waited that long), and a follower that
// waits for it has applied the command; a follower asked answers ErrNotLeader.
func TestReadIndex(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "read-index", nil)
	leader := settled(t, nodes, 3, true)
	registerFake(t, leader, "before-read")
	// Wait for the commit trailer: the leader's commit index is then past the command.
	var cmdIndex uint64
	waitUntil(t, testDeadline, "a barrier trailing the command", func() error {
		commit := leader.r.raft.CommitIndex()
		var l raft.Log
		if err := leader.r.st.logs.GetLog(commit, &l); err != nil {
			return err
		}
		if l.Type == raft.LogCommand {
			return fmt.Errorf("the commit index %d is a command", commit)
		}
		for i := commit; i > 0; i-- {
			if err := leader.r.st.logs.GetLog(i, &l); err == nil && l.Type == raft.LogCommand {
				cmdIndex = i
				return nil
			}
		}
		return errors.New("no command in the log")
	})
	idx, err := leader.r.ReadIndex(ctxT(t, testDeadline))
	if err != nil || idx != cmdIndex {
		t.Fatalf("the leader's read index: %d, %v; want %d, the last command's", idx, err, cmdIndex)
	}
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if _, err := n.r.ReadIndex(ctxT(t, testDeadline)); !errors.Is(err, ErrNotLeader) {
			t.Errorf("a follower's read index: %v, want ErrNotLeader", err)
		}
		if err := n.r.WaitForIndex(ctxT(t, testDeadline), idx); err != nil {
			t.Fatal(err)
		}
		if _, ok := n.r.State().Nodes["fake-before-read"]; !ok {
			t.Errorf("a follower that applied the read index lacks the command before it")
		}
	}
}
