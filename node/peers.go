package node

import (
	"context"
	"fmt"

	"github.com/hydra-compute/hydra/node/work"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Connect dials a peer and hands it to consensus as if discovery had found
// it. Embedding programs and tests use it to wire nodes without mDNS.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.host.Host().Connect(ctx, ai); err != nil {
		return fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	n.raft.PeerFound(ai.ID)
	return nil
}

// callWork carries a worker's sync request to a remote coordinator.
func (n *Node) callWork(ctx context.Context, to peer.ID, req, resp any) error {
	return p2p.Call(ctx, n.host.Host(), to, work.Protocol, req, resp)
}

// isMember reports whether p is in the raft configuration: only members
// take work and hand in results.
func (n *Node) isMember(p peer.ID) bool {
	for _, s := range n.raft.Servers() {
		if s.ID == p {
			return true
		}
	}
	return false
}
