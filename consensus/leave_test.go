package consensus

import (
	"errors"
	"testing"
)

// TestLeaveOnlyVoterRefused: the only voter of a cluster with a non-voter beside it cannot
// leave (hydra leave): Leave answers ErrConflict (409), as evicting it does, and the node stays
// the cluster's leader and a member. Before, it asked raft to hand leadership over, which had no
// voter to take it, and answered that failure as the server's own (500, "cannot find peer").
func TestLeaveOnlyVoterRefused(t *testing.T) {
	nodes := startCluster(t, 2, "leave-only", nil)
	leader := settled(t, nodes, 1, true)
	err := leader.r.Leave(ctxT(t, testDeadline))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("the only voter leaving: %v, want ErrConflict", err)
	}
	if leader.r.Role() != RoleMember {
		t.Fatalf("the only voter's role is %q after its refused leave", leader.r.Role())
	}
	if l, err := agreed(nodes); err != nil || l != leader {
		t.Fatalf("the cluster changed after the refused leave: %v", err)
	}
}
