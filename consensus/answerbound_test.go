package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/wire"
)

// Test_Security_StrangerAnswersBounded: a node asks the peers it found for
// their info (strangers too: an mDNS answer is unauthenticated) and a joiner
// asks a peer it found to add it. Their answers were read up to
// wire.MaxStreamFrame (8 MiB) and decoded whole, and decoding multiplies a
// frame: each "{}," of an info answer's peers is a relayPeer, about 110 MB
// for one 8 MiB answer, before the list was cut to maxRelayPeers. Answers
// longer than the protocol's real ones are refused now, unread.
func Test_Security_StrangerAnswersBounded(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-answers")
	s := attacker(t, n)
	info := infoResponse{Cluster: "sec-answers", Peers: make([]relayPeer, 20_000)}
	join := membershipResponse{Pending: true, Servers: make([]string, 100_000)}
	for _, v := range []any{info, join} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) <= maxInfoAnswer || len(b) >= wire.MaxStreamFrame {
			t.Fatalf("a test answer of %d bytes: want one over %d and under wire.MaxStreamFrame", len(b), maxInfoAnswer)
		}
	}
	p2p.Serve(s, ProtocolInfo, 8<<10, 10*time.Second, testLogger(), func(context.Context, peer.ID, json.RawMessage) (any, error) {
		return info, nil
	})
	p2p.Serve(s, ProtocolJoin, 8<<10, 10*time.Second, testLogger(), func(context.Context, peer.ID, json.RawMessage) (any, error) {
		return join, nil
	})
	n.r.PeerFound(s.ID())
	ctx := ctxT(t, 30*time.Second)
	n.r.queryPeers(ctx)
	n.r.boot.mu.Lock()
	bp := n.r.boot.peers[s.ID()]
	answered := bp != nil && bp.answered
	n.r.boot.mu.Unlock()
	if bp == nil {
		t.Fatal("the stranger was not remembered as found")
	}
	if answered {
		t.Error("a stranger's info answer longer than maxInfoAnswer was read and taken")
	}
	if _, err := n.r.requestMembership(ctx, s.ID(), false); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Errorf("a stranger's join answer longer than maxJoinAnswer: %v, want it refused as too large", err)
	}
}
