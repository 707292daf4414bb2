package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/wire"
)

// Test_MultiNode_LeaderStoppingAnswersNotLeader: a command forwarded to a leader whose raft
// shuts down under it (a SIGTERM) is answered "not the leader": the follower retries on the
// next leader, and answers "retry later" (503) if none comes. The leader failed its handler
// with ErrShutdown instead, which the follower took for an unknown failure of the leader and
// the API answered 500. The command is held at the leader's membership lock (the test hook)
// while its raft shuts down, then goes on to a raft that is down.
func Test_MultiNode_LeaderStoppingAnswersNotLeader(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "leaderstop", nil)
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	newcomer, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := NewCommand(OpMemberAdd, MemberAdd{ID: newcomer.String(), Role: RoleWorker, Name: "newcomer", At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	hook := func(where string, p peer.ID) {
		if where == "wait" && p == newcomer {
			stopped <- leader.r.Shutdown(false) // its host stays up: the forward's stream is answered
		}
	}
	leader.r.gapHook.Store(&hook)
	ctx := ctxT(t, testDeadline)
	var resp applyResponse
	err = p2p.Call(ctx, follower.h, leader.h.ID(), ProtocolApply, applyRequest{Command: data, Auth: testAdminToken}, &resp)
	select {
	case <-stopped:
	default:
		t.Fatalf("the command never reached the leader's membership lock (answer %+v, %v)", resp, err)
	}
	if s := leader.r.raft.State(); s != raft.Shutdown {
		t.Fatalf("the leader's raft is %s after Shutdown", s)
	}
	if err != nil || !resp.NotLeader {
		t.Fatalf("a stopping leader answered %+v, %v; want not-leader", resp, err)
	}
}

// Test_MultiNode_StoppingLeaderOfEarlierBuild: a leader of an earlier build fails a command
// it cannot commit because it is stopping with ErrShutdown's text as its handler's error. The
// follower takes it for what it is, a leader that leads no more: it retries, and fails with
// ErrNotLeader ("retry later", the API's 503), not an unknown failure (500).
func Test_MultiNode_StoppingLeaderOfEarlierBuild(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, "oldstop", nil)
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	r := leader.r
	p2p.ServeAllowed(r.host, ProtocolApply, wire.MaxStreamFrame, r.t.Apply+r.t.RPC, r.log, r.isMember,
		func(context.Context, peer.ID, json.RawMessage) (any, error) { return nil, ErrShutdown })
	cmd, err := NewCommand(OpAdmit, AdmitMode{Mode: AdmitLAN})
	if err != nil {
		t.Fatal(err)
	}
	_, err = follower.r.ApplyAs(ctxT(t, 60*time.Second), cmd, testAdminToken)
	if !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrRejected) {
		t.Fatalf("a forward a stopping leader fails with ErrShutdown: %v, want ErrNotLeader", err)
	}
	if errors.Is(err, ErrShutdown) {
		t.Fatalf("the follower takes the leader's shutdown for its own: %v", err)
	}
}
