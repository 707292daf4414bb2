package consensus

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Fast failover on a closed leader connection.
//
// When a process dies (SIGKILL, crash, OOM), its kernel closes its sockets,
// so every follower sees its libp2p connection to the leader close at once.
// That is a much stronger signal than silence, which may be a stall of a
// busy machine. On it, a follower shortens its heartbeat and election
// timeouts to the leader lease (raft's ReloadConfig; the lease is the lower
// bound raft accepts) until a new leader is known, then restores them. A
// live leader redials within a heartbeat interval, so a spurious disconnect
// costs nothing; a dead one is replaced in about one lease instead of two
// heartbeat timeouts. Silence alone (a power cut) still takes the normal
// timeouts.
type leaderConnWatch struct{ r *Raft }

func (w leaderConnWatch) Listen(network.Network, ma.Multiaddr)      {}
func (w leaderConnWatch) ListenClose(network.Network, ma.Multiaddr) {}
func (w leaderConnWatch) Connected(network.Network, network.Conn)   {}
func (w leaderConnWatch) Disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	go w.r.leaderConnClosed(p)
}

var _ network.Notifiee = leaderConnWatch{}

// leaderConnClosed enters fast-failover mode if p is our leader and we have
// no connection left to it.
func (r *Raft) leaderConnClosed(p peer.ID) {
	if r.isClosed() || r.raft.State() != raft.Follower {
		return
	}
	if l, ok := r.Leader(); !ok || l != p || r.host.Network().Connectedness(p) == network.Connected {
		return
	}
	if !r.fastFailover.CompareAndSwap(false, true) {
		return
	}
	normal := r.raft.ReloadableConfig()
	fast := normal
	fast.HeartbeatTimeout, fast.ElectionTimeout = r.t.LeaderLease, r.t.LeaderLease
	if err := r.raft.ReloadConfig(fast); err != nil {
		r.log.Debug("fast failover: shortening timeouts failed", "err", err)
		r.fastFailover.Store(false)
		return
	}
	r.log.Info("connection to the leader closed: fast failover", "leader", p)
	defer r.fastFailover.Store(false)
	deadline := time.Now().Add(10 * r.t.Heartbeat)
	tick := time.NewTicker(r.t.Commit)
	defer tick.Stop()
	for time.Now().Before(deadline) && !r.isClosed() {
		if l, ok := r.Leader(); ok && l != p {
			break
		}
		<-tick.C
	}
	if err := r.raft.ReloadConfig(normal); err != nil && !r.isClosed() {
		r.log.Warn("fast failover: restoring timeouts failed", "err", err)
	}
}
