package consensus

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAnswersToAnEarlierLeadershipDoNotCount: three voters; one is killed, and the leader hands
// leadership to the other and takes it back at once (a new term). As soon as it leads again,
// the killed voter is unreachable: it answered nothing of this leadership. Before, its answers
// to the leader's previous term, under LastContactMax old, still counted, and a removal checked
// then (or the status page) saw a quorum that was not there.
func TestAnswersToAnEarlierLeadershipDoNotCount(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "reach-term", noVoteMoves)
	leader := settled(t, nodes, 3, true)
	rest := otherThanAll(nodes, leader)
	dead, heir := rest[0], rest[1]
	deadID := raft.ServerID(dead.h.ID().String())
	waitUnreachable(t, leader, dead, false)

	term := leader.r.raft.CurrentTerm()
	dead.kill()
	if err := leader.r.raft.LeadershipTransferToServer(raft.ServerID(heir.h.ID().String()), raft.ServerAddress(heir.h.ID().String())).Error(); err != nil {
		t.Fatalf("hand leadership to %s: %v", heir.name, err)
	}
	waitUntil(t, testDeadline, heir.name+" leads", func() error {
		if heir.r.raft.State() != raft.Leader {
			return errors.New("not yet")
		}
		return nil
	})
	if err := heir.r.raft.LeadershipTransferToServer(raft.ServerID(leader.h.ID().String()), raft.ServerAddress(leader.h.ID().String())).Error(); err != nil {
		t.Fatalf("hand leadership back to %s: %v", leader.name, err)
	}
	waitUntil(t, testDeadline, leader.name+" leads again", func() error {
		if !leader.r.IsLeader() || leader.r.raft.CurrentTerm() <= term {
			return errors.New("not yet")
		}
		return nil
	})
	now := time.Now()
	age := now.Sub(leader.r.trans.lastAnswer(deadID))
	t.Logf("leading again at term %d (was %d); %s last answered %v ago (LastContactMax %v)", leader.r.raft.CurrentTerm(), term, dead.name, age, leader.r.t.LastContactMax)
	if leader.r.reachable(deadID, now) {
		t.Fatalf("%s, killed before this leadership, counts as reachable (its last answer, to term %d, is %v old)", dead.name, term, age)
	}
	if !slices.Contains(leader.r.Unreachable(), dead.h.ID()) {
		t.Fatalf("Unreachable() = %v, want %s in it", leader.r.Unreachable(), dead.name)
	}
	// The live voter answers this leadership and counts.
	waitUnreachable(t, leader, heir, false)
}
