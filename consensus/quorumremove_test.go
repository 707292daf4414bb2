package consensus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// noVoteMoves keeps a dead voter a voter: the promoter would otherwise move its vote to the
// non-voter after DeadVoterGrace, and the configuration these tests need would be gone.
func noVoteMoves(_ int, c *Config) { c.DeadVoterGrace = time.Hour }

// waitUnreachable waits until leader counts n unreachable (or, with want false, reachable again).
func waitUnreachable(t *testing.T, leader, n *testNode, want bool) {
	t.Helper()
	id := raft.ServerID(n.h.ID().String())
	waitUntil(t, testDeadline, fmt.Sprintf("the leader counts %s unreachable: %v", n.name, want), func() error {
		if got := !leader.r.reachable(id, time.Now()); got != want {
			return fmt.Errorf("unreachable: %v", got)
		}
		return nil
	})
}

// TestRemovalLeavingNoQuorumRefused: three voters (and a non-voter), one of them killed.
// Removing another, healthy voter (hydra remove on the leader or through a follower, hydra
// leave of that voter or of the leader) is refused with ErrConflict (409), a message that names
// the unreachable voter and the way out, and nothing changes. Before, the removal committed and
// left two voters, one of them down: no quorum, the cluster unavailable until the dead one came
// back. Once the dead voter is back, the same removal goes through.
func TestRemovalLeavingNoQuorumRefused(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, "quorum-remove", noVoteMoves)
	leader := settled(t, nodes, 3, true)
	var dead, healthy, spare *testNode
	for _, s := range leader.r.Servers() {
		for _, n := range nodes {
			switch {
			case n.h.ID() != s.ID || n == leader:
			case !s.Voter:
				spare = n
			case dead == nil:
				dead = n
			default:
				healthy = n
			}
		}
	}
	dead.kill()
	waitUnreachable(t, leader, dead, true)

	var texts []string
	for _, via := range []*testNode{leader, spare} {
		err := via.r.Evict(ctxT(t, testDeadline), healthy.h.ID(), testAdminToken)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), quorumRefused) || !strings.Contains(err.Error(), dead.h.ID().String()) {
			t.Fatalf("removing %s through %s (leader %v) with %s down: %v, want ErrConflict naming %s", healthy.name, via.name, via == leader, dead.name, err, dead.name)
		}
		texts = append(texts, err.Error())
	}
	if texts[0] != texts[1] {
		t.Errorf("the refusal on the leader and through a follower differ:\n%s\n%s", texts[0], texts[1])
	}
	// The leader's own eviction, through a follower: refused before leadership is handed over.
	if err := spare.r.Evict(ctxT(t, testDeadline), leader.h.ID(), testAdminToken); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), quorumRefused) {
		t.Fatalf("removing the leader with %s down: %v, want ErrConflict", dead.name, err)
	}
	if err := healthy.r.Leave(ctxT(t, testDeadline)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), quorumRefused) {
		t.Fatalf("%s leaving with %s down: %v, want ErrConflict", healthy.name, dead.name, err)
	}
	if err := leader.r.Leave(ctxT(t, testDeadline)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), quorumRefused) {
		t.Fatalf("the leader leaving with %s down: %v, want ErrConflict", dead.name, err)
	}
	for _, n := range []*testNode{healthy, leader} {
		if _, revoked := leader.r.fsm.peerRole(n.h.ID().String()); revoked || !leader.r.votes(n.h.ID()) {
			t.Fatalf("%s was revoked (%v) or lost its vote after the refusals", n.name, revoked)
		}
	}
	if !leader.r.IsLeader() {
		t.Fatal("the leader handed leadership over for a refused removal")
	}

	// The dead voter back: the same removal goes through, and the cluster leads on.
	dead.restart(alive(nodes))
	waitUnreachable(t, leader, dead, false)
	if err := spare.r.Evict(ctxT(t, testDeadline), healthy.h.ID(), testAdminToken); err != nil {
		t.Fatalf("removing %s once %s is back: %v", healthy.name, dead.name, err)
	}
	healthy.kill()
	rest := otherThanAll(nodes, healthy)
	settled(t, rest, 3, false)
	writeOn(t, rest, "after-the-removal")
}

// TestRemoveDeadVoterAccepted: three voters, one killed: removing the dead one (hydra remove of
// a machine that died) goes through — the two that remain are a quorum of themselves — and the
// cluster leads on with them.
func TestRemoveDeadVoterAccepted(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "quorum-remove-dead", noVoteMoves)
	leader := settled(t, nodes, 3, true)
	dead := otherThan(nodes, leader)
	dead.kill()
	waitUnreachable(t, leader, dead, true)
	via := otherThanAll(otherThanAll(nodes, leader), dead)[0]
	if err := via.r.Evict(ctxT(t, testDeadline), dead.h.ID(), testAdminToken); err != nil {
		t.Fatalf("removing the dead voter %s through %s: %v", dead.name, via.name, err)
	}
	settled(t, nodes, 2, false)
	writeOn(t, nodes, "after-removing-the-dead")
}
