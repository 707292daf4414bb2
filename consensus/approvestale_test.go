package consensus

import (
	"fmt"
	"testing"
	"time"
)

// TestApproveOnAStaleFollowerAsksTheLeader: four nodes, three voters; a non-voter x is removed
// while a follower is down. That follower, restarted with no route to the others, still lists x
// as a member (its replica has not applied the removal). Approving x again through it must not
// answer success from that stale replica: before, it did, with no entry proposed, and x stayed
// removed for good (the chaos harness, seed 13: "n4 a member again: not within 2m0s"). Once the
// follower reaches the leader, the approval through it admits x again.
func TestApproveOnAStaleFollowerAsksTheLeader(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, "approve-stale", noVoteMoves)
	leader := settled(t, nodes, 3, true)
	var stale, x *testNode
	for _, n := range nodes {
		switch {
		case n == leader:
		case !leader.r.votes(n.h.ID()):
			x = n
		case stale == nil:
			stale = n
		}
	}
	if x == nil || stale == nil {
		t.Fatalf("want a non-voter and a follower voter beside leader %s", leader.name)
	}
	xid := x.h.ID()
	waitUntil(t, testDeadline, fmt.Sprintf("%s's replica lists %s as a member", stale.name, x.name), func() error {
		if got := stale.r.roleOf(xid); got != RoleMember {
			return fmt.Errorf("role %q", got)
		}
		return nil
	})
	stale.kill()
	x.kill()
	if err := leader.r.Evict(ctxT(t, testDeadline), xid, testAdminToken); err != nil {
		t.Fatalf("remove %s: %v", x.name, err)
	}
	// Restarted alone: it knows no peer's address, and its own is new.
	stale.restart(nil)
	if got := stale.r.roleOf(xid); got != RoleMember {
		t.Fatalf("%s's replica after its restart: %s is %q; the test needs it stale (a member)", stale.name, x.name, got)
	}
	_, err := stale.r.Approve(ctxT(t, 5*time.Second), xid.String(), RoleMember, testAdminToken)
	if err == nil && leader.r.roleOf(xid) != RoleMember {
		t.Fatalf("approving %s through %s, whose replica has not applied its removal, answered success; the leader lists it as %q (revoked: %v)",
			x.name, stale.name, leader.r.roleOf(xid), leader.r.State().Revoked[xid.String()])
	}

	connectAll(t, alive(nodes))
	waitUntil(t, testDeadline, fmt.Sprintf("%s applies the removal of %s", stale.name, x.name), func() error {
		if !stale.r.State().Revoked[xid.String()] {
			return fmt.Errorf("not revoked in its replica (role %q)", stale.r.roleOf(xid))
		}
		return nil
	})
	if _, err := stale.r.Approve(ctxT(t, testDeadline), xid.String(), RoleMember, testAdminToken); err != nil {
		t.Fatalf("approving %s through %s once it reaches the leader: %v", x.name, stale.name, err)
	}
	waitUntil(t, testDeadline, fmt.Sprintf("the leader lists %s as a member again", x.name), func() error {
		l, err := agreed(alive(nodes))
		if err != nil {
			return err
		}
		if got := l.r.roleOf(xid); got != RoleMember || l.r.State().Revoked[xid.String()] {
			return fmt.Errorf("%s lists it as %q (revoked: %v)", l.name, got, l.r.State().Revoked[xid.String()])
		}
		return nil
	})
}
