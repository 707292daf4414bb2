package consensus

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/p2p"
)

// The leader's membership changes against each other (memberMu): a test
// hook (Raft.gapHook) lands a second request in the gap between one
// change's check and its last step, where a compromised node or a second
// admin could land it by timing.

// within polls cond until it holds or d passes: for a test hook that
// waits for a change the fix under test forbids (then the wait ends at d).
func within(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Test_Security_LeaveJoinRace: a join that arrives while the leader
// removes a leaving worker (server removed, allow-list entry not yet) does
// not put the server back. Before memberMu it did: the join still found
// the worker's entry and re-added its server, the leave then dropped the
// entry, and the server without one was a member (raft RPCs, an admin
// credential of its own) — a compromised worker only had to send both at
// once.
func Test_Security_LeaveJoinRace(t *testing.T) {
	n := oneNodeCluster(t, "sec-leave-join")
	w := admittedHost(t, n, RoleWorker)
	ctx := ctxT(t, 30*time.Second)
	join := membershipRequest{Cluster: "sec-leave-join", ID: w.ID().String()}
	if err := p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, join, nil); err != nil || !n.r.hasServer(w.ID()) {
		t.Fatalf("the admitted worker's join: %v; server %v", err, n.r.hasServer(w.ID()))
	}
	joined := make(chan error, 1)
	hook := func(where string, p peer.ID) {
		if where != "leave" || p != w.ID() {
			return
		}
		go func() { joined <- p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, join, nil) }()
		within(2*time.Second, func() bool { return n.r.hasServer(w.ID()) })
	}
	n.r.gapHook.Store(&hook)
	leave := membershipRequest{Cluster: "sec-leave-join", ID: w.ID().String(), Leave: true}
	if err := p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, leave, nil); err != nil {
		t.Fatalf("the worker's leave: %v", err)
	}
	n.r.gapHook.Store(nil)
	select {
	case <-joined: // pending, or refused: either way no membership
	case <-ctx.Done():
		t.Fatal("the join never ended")
	}
	if role := n.r.roleOf(w.ID()); role != "" || n.r.mayRaft(w.ID()) || n.r.hasServer(w.ID()) {
		t.Fatalf("after leave and join the worker is a %q (server %v), may send raft RPCs %v", role, n.r.hasServer(w.ID()), n.r.mayRaft(w.ID()))
	}
}

// Test_Security_DenyDuringTokenJoin: a node denied while the leader admits
// it with a join token stays refused. Before memberMu the admission,
// decided before the deny was applied, was applied after it and undid it
// (an admission clears the key's revocation): the denied machine was a
// member.
func Test_Security_DenyDuringTokenJoin(t *testing.T) {
	n := oneNodeCluster(t, "sec-deny-token")
	cid := n.r.State().ClusterID
	id, secret, rec := NewJoinToken(cid)
	rec.Role, rec.Created = RoleMember, time.Now().UTC()
	add, err := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), add, testAdminToken); err != nil {
		t.Fatal(err)
	}
	pt, err := ParseJoinToken(secret)
	if err != nil {
		t.Fatal(err)
	}
	j := attacker(t, n)
	ctx := ctxT(t, 30*time.Second)
	denied := make(chan error, 1)
	hook := func(where string, p peer.ID) {
		if where != "admit" || p != j.ID() {
			return
		}
		go func() { denied <- n.r.Evict(ctx, j.ID(), testAdminToken) }()
		within(2*time.Second, func() bool { return n.r.State().Revoked[j.ID().String()] })
	}
	n.r.gapHook.Store(&hook)
	req := membershipRequest{Cluster: "sec-deny-token", ID: j.ID().String(), TokenID: pt.ID, Proof: pt.Proof(cid, j.ID().String(), n.h.ID().String())}
	_ = p2p.Call(ctx, j, n.h.ID(), ProtocolJoin, req, nil) // admitted, then denied; or refused
	n.r.gapHook.Store(nil)
	select {
	case err := <-denied:
		if err != nil {
			t.Fatalf("deny: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the deny never ended")
	}
	if err := n.r.WaitForApplied(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	if role, acc := n.r.roleOf(j.ID()), n.r.Access(j.ID()); role != "" || acc != p2p.AccessRefused {
		t.Fatalf("the denied node is a %q, access %v; want refused", role, acc)
	}
}
