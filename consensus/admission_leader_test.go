package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
)

// removeLeaderAndCheck evicts the leader of a cluster of k voters (hydra remove, sent through a
// follower's API) and checks that the others then lead a cluster whose configuration no longer
// lists it, that they refuse its key, that it leads no more, and that they accept writes.
func removeLeaderAndCheck(t *testing.T, k int, cluster string) {
	nodes := startCluster(t, 3, cluster, nil)
	nodes = shrinkTo(t, nodes, settled(t, nodes, 3, true), k)
	leader := settled(t, nodes, k, true)
	via := otherThan(nodes, leader)
	gone := leader.h.ID()
	if err := via.r.Evict(ctxT(t, testDeadline), gone, testAdminToken); err != nil {
		t.Fatalf("remove the leader through %s: %v", via.name, err)
	}
	rest := otherThanAll(nodes, leader)
	waitUntil(t, testDeadline, fmt.Sprintf("the %d others lead a cluster without the removed leader", len(rest)), func() error {
		l, err := agreed(rest) // the configuration lists exactly the others
		if err != nil {
			return err
		}
		if v := voters(l.r.Servers()); v != len(rest) {
			return fmt.Errorf("%d voters, want %d", v, len(rest))
		}
		if leader.r.IsLeader() {
			return errors.New("the removed node still leads")
		}
		return nil
	})
	for _, n := range rest {
		if a := n.r.Access(gone); a != p2p.AccessRefused {
			t.Fatalf("%s: the removed leader's access is %v, want refused", n.name, a)
		}
	}
	writeOn(t, rest, "after-remove")
	waitUntil(t, testDeadline, "the others apply a write", func() error {
		for _, n := range rest {
			if !hasFake(n, "after-remove") {
				return fmt.Errorf("%s misses it", n.name)
			}
		}
		return nil
	})
	// The removed node stays out: it never leads again (nobody votes for it).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if leader.r.IsLeader() {
			t.Fatal("the removed node leads again")
		}
		if _, err := agreed(rest); err != nil {
			t.Fatalf("the cluster lost its agreement after the removal: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a check that must keep holding
	}
}

// shrinkTo makes followers of leader leave (hydra leave) until k voters remain, as a cluster of
// two voters is reached (autopilot keeps an odd number of voters otherwise), and returns them.
func shrinkTo(t *testing.T, nodes []*testNode, leader *testNode, k int) []*testNode {
	t.Helper()
	for len(nodes) > k {
		n := otherThan(nodes, leader)
		if err := n.r.Leave(ctxT(t, testDeadline)); err != nil {
			t.Fatalf("%s leaves: %v", n.name, err)
		}
		n.kill()
		nodes = otherThanAll(nodes, n)
	}
	settled(t, nodes, k, true)
	return nodes
}

// writeOn applies a write (a made-up node's registration) as the leader's own proposal (the
// evicted node's credential, which test nodes share, went with it) through the leader the live
// nodes agree on, and waits until that leader applied it (applyThroughLeader). Not through a
// leader a wait saw: it may have lost the leadership since (an election on a loaded machine,
// two voters left), and a registration of another node that a follower forwards without a
// credential is refused ("may only register or remove itself").
func writeOn(t *testing.T, nodes []*testNode, name string) {
	t.Helper()
	cmd, err := NewCommand(OpNodeRegister, NodeMeta{ID: "fake-" + name, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	applyThroughLeader(t, nodes, "the write "+name, cmd, "")
}

// TestRemoveLeaderOfTwoVoters: two voters, the leader removed (hydra remove through the
// follower). Before, the leader committed its own revocation but never left the configuration
// (reconcileServer skips itself), and the follower, which then refused it, could win no
// election with two voters listed: no leader for good.
func TestRemoveLeaderOfTwoVoters(t *testing.T) {
	t.Parallel()
	removeLeaderAndCheck(t, 2, "rmleader-2")
}

// TestRemoveLeaderOfThreeVoters: the same with three voters: two remain, one leads.
func TestRemoveLeaderOfThreeVoters(t *testing.T) {
	t.Parallel()
	removeLeaderAndCheck(t, 3, "rmleader-3")
}

// TestLeaderLeavesTwoVoters: hydra leave on the leader of a two-voter cluster ends with the
// other node the only voter, leading, accepting writes.
func TestLeaderLeavesTwoVoters(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "rmleader-leave", nil)
	nodes = shrinkTo(t, nodes, settled(t, nodes, 3, true), 2)
	leader := settled(t, nodes, 2, true)
	if err := leader.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	leader.kill()
	settled(t, nodes, 1, false)
	writeOn(t, nodes, "after-leave")
}

// TestRemoveOnlyVoterRefused: the only voter of a cluster (here with a non-voter) cannot be
// removed: Evict says so (ErrConflict), and a revocation proposed past that check (a node of an
// older build) is refused by the leader, which keeps leading as a member. Before, the leader
// committed it: the cluster was left with a revoked voter, which nobody else could replace.
func TestRemoveOnlyVoterRefused(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, "rmleader-only", nil)
	leader := settled(t, nodes, 1, true)
	via := otherThan(nodes, leader)
	err := via.r.Evict(ctxT(t, testDeadline), leader.h.ID(), testAdminToken)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("evicting the only voter: %v, want ErrConflict", err)
	}
	cmd, err := NewCommand(OpMemberRemove, MemberRemove{ID: leader.h.ID().String(), Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := via.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); !errors.Is(err, ErrRejected) {
		t.Fatalf("a revocation of the only voter forwarded to it: %v, want ErrRejected", err)
	}
	if _, revoked := leader.r.fsm.peerRole(leader.h.ID().String()); revoked || leader.r.Role() != RoleMember {
		t.Fatalf("the only voter was revoked (role %q)", leader.r.Role())
	}
	if l, err := agreed(nodes); err != nil || l != leader {
		t.Fatalf("the cluster changed: %v", err)
	}
}

// TestWriteOnAfterTheLeadershipMoved: writeOn, the write the tests above make once a wait saw a
// leader, goes through the leader of the moment. Here the leader the wait saw hands the
// leadership over before the write, as an election on a loaded machine takes it: writeOn
// proposed through that node, a follower by then, which forwards another node's registration
// without a credential and is refused ("may only register or remove itself") — a failure of the
// test, not of the cluster (CI met the same in TestRemoveLeaderOfThreeVoters).
func TestWriteOnAfterTheLeadershipMoved(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "writeon-moved", nil)
	seen := settled(t, nodes, 3, true)
	if err := seen.r.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("%s hands the leadership over: %v", seen.name, err)
	}
	waitUntil(t, testDeadline, "the nodes agree on another leader", func() error {
		l, err := agreed(nodes)
		if err != nil {
			return err
		}
		if l == seen {
			return fmt.Errorf("%s still leads", seen.name)
		}
		return nil
	})
	writeOn(t, nodes, "after-the-move")
	waitUntil(t, testDeadline, "every node applies the write", func() error {
		for _, n := range nodes {
			if !hasFake(n, "after-the-move") {
				return fmt.Errorf("%s misses it", n.name)
			}
		}
		return nil
	})
}
