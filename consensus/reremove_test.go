package consensus

import (
	"fmt"
	"testing"
)

// TestRepeatedRemovalAnswersAsTheFirst: three voters and a non-voter. A voter's eviction is
// accepted and its removal from the configuration held (as a missing quorum holds it in a real
// cluster); then another voter dies. Repeating the eviction (hydra remove again: a retry, the
// first answer lost) on the leader or through the non-voter answers as the first one did, at
// once, and commits nothing new. Before, the repeat was judged as a removal still to come: with
// the dead voter, the voters that would remain had no reachable quorum, and the leader refused
// it (ErrConflict, 409) although the removal was decided and under way. Once the dead voter is
// back, the removal completes, and a repeat after it has left answers the same.
func TestRepeatedRemovalAnswersAsTheFirst(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, "reremove", noVoteMoves)
	leader := settled(t, nodes, 3, true)
	var removed, dead, spare *testNode
	for _, s := range leader.r.Servers() {
		for _, n := range nodes {
			switch {
			case n.h.ID() != s.ID || n == leader:
			case !s.Voter:
				spare = n
			case removed == nil:
				removed = n
			default:
				dead = n
			}
		}
	}
	release := evictHeld(t, leader, removed)
	dead.kill()
	waitUnreachable(t, leader, dead, true)

	before := leader.r.fsm.index.Load()
	for _, via := range []*testNode{leader, spare} {
		if err := via.r.Evict(ctxT(t, testDeadline), removed.h.ID(), testAdminToken); err != nil {
			t.Fatalf("repeating the removal of %s through %s (leader %v) while %s is down: %v, want it answered as the first", removed.name, via.name, via == leader, dead.name, err)
		}
	}
	if !leader.r.IsLeader() || !leader.r.votes(removed.h.ID()) {
		t.Fatalf("leads: %v, %s still a voter: %v; want both (its removal held)", leader.r.IsLeader(), removed.name, leader.r.votes(removed.h.ID()))
	}
	if got := leader.r.fsm.index.Load(); got != before {
		t.Errorf("the repeats moved the leader's FSM from entry %d to %d: want no new entry", before, got)
	}

	dead.restart(alive(nodes))
	waitUnreachable(t, leader, dead, false)
	release()
	waitUntil(t, testDeadline, removed.name+" leaves the configuration", func() error {
		if leader.r.hasServer(removed.h.ID()) {
			return fmt.Errorf("%s is still a server", removed.name)
		}
		return nil
	})
	if err := spare.r.Evict(ctxT(t, testDeadline), removed.h.ID(), testAdminToken); err != nil {
		t.Fatalf("repeating the removal of %s once it has left: %v", removed.name, err)
	}
	removed.kill()
	rest := otherThanAll(nodes, removed)
	settled(t, rest, 2, false)
	writeOn(t, rest, "after-the-repeats")
}
