package consensus

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/hydra-compute/hydra/p2p"
)

// lowFakeIDs returns n peer IDs that sort below any real key's: Ed25519
// public keys of zeros but for the last byte. Nobody holds their private
// keys; a stranger only names them.
func lowFakeIDs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 32)
		b[31] = byte(i + 1)
		pk, err := crypto.UnmarshalEd25519PublicKey(b)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id.String()
	}
	return out
}

// Test_Security_StrangerCannotSplitFreshLAN: a stranger on a fresh LAN
// announces more low candidates than maxStuckRank (made-up peer IDs that
// never found anything) and answers every info call on a common beat, so
// that the honest nodes' bootstrap rounds end together. Two honest nodes
// started together must still end in one cluster: the higher must not give
// the lower up at the instant the lower gives up the stranger's candidates
// and founds (docs/security.md: "the next candidate up waits one period
// more, so honest nodes never give up on each other at the same instant").
func Test_Security_StrangerCannotSplitFreshLAN(t *testing.T) {
	t.Parallel()
	const cluster = "split"
	mod := func(c *Config) {
		c.Multiplier = 1
		c.DiscoveryWindow = 300 * time.Millisecond
	}
	nodes := []*testNode{newTestNode(t, "a", cluster, mod), newTestNode(t, "b", cluster, mod)}
	connectAll(t, nodes)

	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	fakes := lowFakeIDs(t, maxStuckRank+1)
	const beat = time.Second // below the info call's timeout (RPC)
	p2p.Serve(h, ProtocolInfo, 8<<10, 10*time.Second, testLogger().With("node", "stranger"), func(ctx context.Context, _ peer.ID, _ json.RawMessage) (any, error) {
		// Answer at the next whole beat: every round that asks the
		// stranger ends at the same instant on every node.
		select {
		case <-time.After(time.Until(time.Now().Truncate(beat).Add(beat))):
		case <-ctx.Done():
		}
		return infoResponse{Cluster: cluster, Voter: VoterAuto, Candidates: fakes}, nil
	})
	for _, n := range nodes {
		n.h.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.PermanentAddrTTL)
		if err := n.h.Connect(ctxT(t, 10*time.Second), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
			t.Fatal(err)
		}
		n.r.PeerFound(h.ID())
	}
	for _, n := range nodes {
		n.run()
	}
	waitUntil(t, testDeadline+30*time.Second, "one cluster of both nodes", func() error {
		a, b := nodes[0].r.State().ClusterID, nodes[1].r.State().ClusterID
		if a != "" && b != "" && a != b {
			t.Fatalf("the nodes founded two clusters (%s and %s)", a, b)
		}
		_, err := agreed(nodes)
		return err
	})
}
