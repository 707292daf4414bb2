package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/wire"
)

// Test_MultiNode_LeaderUnreachable: a command a follower forwards to a leader that raft still
// names, but whose forward stream fails every time (reset, as when the leader is cut off or
// killed in the instant before the forward), fails after its retries with ErrLeaderUnreachable:
// a transport failure a caller answers with "retry" (503). It came back unmarked, and the API
// answered such a failure 500 (job routes) or 400 (membership routes).
func Test_MultiNode_LeaderUnreachable(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, "unreach", nil)
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	// The leader stays the leader (raft's own streams go on) but resets every forwarded command.
	leader.h.SetStreamHandler(ProtocolApply, func(s network.Stream) { _ = s.Reset() })
	cmd, err := NewCommand(OpAdmit, AdmitMode{Mode: AdmitLAN})
	if err != nil {
		t.Fatal(err)
	}
	_, err = follower.r.Apply(ctxT(t, 60*time.Second), cmd)
	if !errors.Is(err, ErrLeaderUnreachable) || errors.Is(err, ErrRejected) {
		t.Fatalf("a forward the leader resets every time: %v, want ErrLeaderUnreachable", err)
	}
	if l, ok := follower.r.Leader(); !ok || l != leader.h.ID() {
		t.Fatalf("the follower no longer names the leader (%v): the test did not cut the forward alone", l)
	}
	// A refusal by a reachable leader is no transport failure.
	r := leader.r
	p2p.ServeAllowed(r.host, ProtocolApply, wire.MaxStreamFrame, r.t.Apply+r.t.RPC, r.log, r.isMember, r.handleApply)
	bad := Command{Op: OpAdmit, Payload: []byte(`{"mode":"open"}`)}
	if _, err := follower.r.Apply(ctxT(t, 60*time.Second), bad); !errors.Is(err, ErrRejected) || errors.Is(err, ErrLeaderUnreachable) {
		t.Fatalf("a command the leader refuses: %v, want ErrRejected alone", err)
	}
}
