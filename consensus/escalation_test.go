package consensus

import (
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
)

// Test_Security_WorkerSelfRemoval: a worker that is a raft server (a
// non-voter) cannot drop its own allow-list entry through the apply
// protocol. Without the entry, a server counts as a member (the rule for a
// cluster created before the allow-list): before the check, a worker
// proposed MemberRemove of itself ("leaving is always allowed") and was
// then a member, sent raft RPCs, and registered an admin credential of its
// own. A node leaves through the join protocol, whose leader removes the
// server before the entry.
func Test_Security_WorkerSelfRemoval(t *testing.T) {
	n := oneNodeCluster(t, "sec-self-remove")
	w := admittedHost(t, n, RoleWorker)
	ctx := ctxT(t, 30*time.Second)
	var resp membershipResponse
	join := membershipRequest{Cluster: "sec-self-remove", ID: w.ID().String()}
	if err := p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, join, &resp); err != nil || !n.r.hasServer(w.ID()) {
		t.Fatalf("the admitted worker's join: %+v, %v; server %v", resp, err, n.r.hasServer(w.ID()))
	}
	propose := func(cmd Command, err error) applyResponse {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var ar applyResponse
		if err := p2p.Call(ctx, w, n.h.ID(), ProtocolApply, applyRequest{Command: mustEncode(cmd)}, &ar); err != nil {
			t.Fatalf("apply %s: %v", cmd.Op, err)
		}
		return ar
	}
	if ar := propose(NewCommand(OpMemberRemove, MemberRemove{ID: w.ID().String()})); ar.Rejected == "" {
		t.Errorf("a worker's removal of its own allow-list entry was applied (index %d)", ar.Index)
	}
	cred := CredAdd{ID: nodeCredID(w.ID()), Cred: Cred{Role: RoleAdmin, Hash: HashSecret("worker-token"), Node: w.ID().String(), Created: time.Now().UTC()}}
	propose(NewCommand(OpCredAdd, cred))
	if err := n.r.WaitForApplied(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	if role := n.r.roleOf(w.ID()); role != RoleWorker || n.r.mayRaft(w.ID()) || n.r.State().IsAdmin("worker-token") {
		t.Fatalf("the worker is now a %q, may send raft RPCs %v, holds an admin credential %v",
			role, n.r.mayRaft(w.ID()), n.r.State().IsAdmin("worker-token"))
	}
}

// Test_Security_ApproveAdmitted: approving a node that is admitted already
// with another role is refused, not reported done. Before, hydra approve
// --role worker of a member answered "approved … as worker" while the node
// stayed a member, with its vote and its admin credential.
func Test_Security_ApproveAdmitted(t *testing.T) {
	n := oneNodeCluster(t, "sec-approve-admitted")
	m := admitFake(t, n, RoleMember)
	ctx := ctxT(t, 30*time.Second)
	if _, err := n.r.Approve(ctx, m.String(), RoleWorker, testAdminToken); err == nil {
		t.Errorf("approving a member as a worker succeeded; it is a %q", n.r.roleOf(m))
	}
	if _, err := n.r.Approve(ctx, m.String(), RoleMember, testAdminToken); err != nil || n.r.roleOf(m) != RoleMember {
		t.Errorf("approving a member as a member again: %v, role %q", err, n.r.roleOf(m))
	}
}
