package consensus

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

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
	t.Parallel()
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
	t.Parallel()
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

// Test_Security_AnswerNamesVoters: the leader's answer to an admitted
// joiner names the leader and the voters, whom the joiner trusts with raft
// RPCs until its replica knows the roles, and no worker. Before, it named
// every server, workers too: a worker could send a fresh node raft RPCs,
// and keep doing so for good once it had left the cluster.
func Test_Security_AnswerNamesVoters(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, "founder", "sec-answer", nil) // --admit lan
	n.run()
	waitUntil(t, testDeadline, "founder leads an initialized cluster", func() error {
		if !n.r.Leading() || !n.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	w := admittedHost(t, n, RoleWorker)
	ctx := ctxT(t, 30*time.Second)
	if err := p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, membershipRequest{Cluster: "sec-answer", ID: w.ID().String()}, nil); err != nil || !n.r.hasServer(w.ID()) {
		t.Fatalf("the admitted worker's join: %v; server %v", err, n.r.hasServer(w.ID()))
	}
	x := attacker(t, n)
	var resp membershipResponse
	if err := p2p.Call(ctx, x, n.h.ID(), ProtocolJoin, membershipRequest{Cluster: "sec-answer", ID: x.ID().String()}, &resp); err != nil || resp.Pending {
		t.Fatalf("a LAN join: %+v, %v; want admitted", resp, err)
	}
	if resp.Leader != n.h.ID().String() || !slices.Contains(resp.Servers, n.h.ID().String()) || slices.Contains(resp.Servers, w.ID().String()) {
		t.Fatalf("the answer names leader %s and servers %v; want the founder %s and not the worker %s", resp.Leader, resp.Servers, n.h.ID(), w.ID())
	}
}

// Test_Security_LeftVoterNotTrusted: a voter that leaves the cluster
// (hydra leave: its key is not revoked) may no longer send raft RPCs to a
// node that joined while it was a voter. Before, that node kept it in the
// set its admission answer named, trusted as a member until a restart.
func Test_Security_LeftVoterNotTrusted(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "sec-left-voter", nil)
	leader := settled(t, nodes, 3, false)
	j := newTestNode(t, "joiner", "sec-left-voter", nil)
	connectAll(t, append(nodes, j))
	j.run()
	v := otherThan(nodes, leader)
	waitUntil(t, testDeadline, "the joiner is a member that knows the voters", func() error {
		if j.r.Role() != RoleMember || j.r.roleOf(v.h.ID()) != RoleMember {
			return errors.New("not yet")
		}
		return nil
	})
	id := v.h.ID()
	if err := v.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	v.kill()
	waitUntil(t, testDeadline, "the joiner sees the voter gone", func() error {
		if j.r.hasServer(id) || j.r.State().Members[id.String()].Role != "" {
			return errors.New("not yet")
		}
		return nil
	})
	if j.r.mayRaft(id) || j.r.Access(id) == p2p.AccessMember {
		t.Fatalf("the voter that left may still send raft RPCs (%v) or counts as a member (%v) on the joiner", j.r.mayRaft(id), j.r.Access(id))
	}
}

// Test_Security_ApproveSharedFingerprint: approving or denying by a
// fingerprint that two waiting nodes share is refused (the peer ID tells
// them apart). A fingerprint is 40 bits: a stranger that sees a joiner's in
// the open status can grind a key with the same one. Before, the one whose
// peer ID sorted first was approved.
func Test_Security_ApproveSharedFingerprint(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-shared-fp")
	a, b := newPeerID(t), newPeerID(t)
	fp := Fingerprint(a)
	now := time.Now()
	// b's key ground to a's fingerprint: put on the pending list directly.
	n.r.pending.add(PendingNode{ID: a.String(), Name: "a", Fingerprint: fp}, now)
	n.r.pending.add(PendingNode{ID: b.String(), Name: "b", Fingerprint: fp}, now)
	ctx := ctxT(t, 30*time.Second)
	if p, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); err == nil {
		t.Errorf("approving a shared fingerprint admitted %s", p)
	}
	if p, err := n.r.Deny(ctx, strings.ToLower(fp), testAdminToken); err == nil {
		t.Errorf("denying a shared fingerprint refused %s", p)
	}
	if n.r.roleOf(a) != "" || n.r.roleOf(b) != "" || n.r.Access(a) == p2p.AccessRefused || n.r.Access(b) == p2p.AccessRefused {
		t.Fatalf("roles %q and %q, access %v and %v after a shared fingerprint", n.r.roleOf(a), n.r.roleOf(b), n.r.Access(a), n.r.Access(b))
	}
	if p, err := n.r.Approve(ctx, b.String(), RoleWorker, testAdminToken); err != nil || p != b || n.r.roleOf(b) != RoleWorker {
		t.Fatalf("approving by peer ID: %s, %v, role %q", p, err, n.r.roleOf(b))
	}
}

// TestMayRaftBeforeRaftStarts: the raft transport serves streams from before raft.NewRaft (while
// the node replays its log), and its allow check (mayRaft) asked raft for its configuration when
// the peer had no role in the replica yet, as every peer has before the replay reaches the
// allow-list: a leader's heartbeat in that window dereferenced the nil raft and the node
// panicked (the chaos harness met it on a node starting again after a full disk). Until raft
// runs, such a peer is refused; it retries.
func TestMayRaftBeforeRaftStarts(t *testing.T) {
	r := &Raft{id: peer.ID("self"), fsm: NewFSM(nil)}
	if r.mayRaft(peer.ID("leader")) || r.hasServer(peer.ID("leader")) || r.inCluster() {
		t.Fatal("a node whose raft has not started accepts raft RPCs from a peer it knows nothing of")
	}
}
