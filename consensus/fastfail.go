package consensus

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// Fast failover on a closed leader connection.
//
// When a process dies (SIGKILL, crash, OOM), its kernel closes its sockets,
// so every follower sees its libp2p connection to the leader close at once.
// That is a much stronger signal than silence, which may be a stall of a
// busy machine, and it lets the base timeouts stay long (cheap when idle,
// no elections under load: see DefaultTimings) while a killed leader is
// replaced in milliseconds:
//
//  1. A voter that has no connection left to its leader shortens its
//     heartbeat and election timeouts to the leader lease (raft's
//     ReloadConfig; the lease is the lower bound raft accepts) until a new
//     leader is known, then restores them. This alone would take L to 2L.
//  2. It redials the leader (within Redial, 500 ms). A live leader answers
//     (a spurious disconnect costs nothing more: normal timeouts again); a
//     dead one refuses at once over TCP (connection refused or reset) and
//     stays silent over QUIC, so a dial that fails either way counts as
//     proof. (A connection that closes while the leader lives on and is
//     unreachable from here, e.g. after a long partition, costs one
//     needless election at worst.)
//  3. Once the leader is confirmed dead, the surviving voters of the
//     configuration, in peer-ID order, each wait rank × FailoverStagger and,
//     if still no leader is known, start an election at once: a TimeoutNow
//     RPC handed to the local raft through the transport, the message of a
//     leadership transfer, so the election skips pre-vote and the other
//     voters grant their vote although they still remember the old leader.
//     The first in order normally wins within a round trip; the stagger
//     keeps the survivors from splitting the vote, and a later one takes
//     over if the first cannot win (its log is behind, or it died too).
//
// Silence alone (a power cut, a pulled cable) still takes the normal
// timeouts, about 2H to 3H.
//
// The same watch tells the leader's readmission (readmit.go) of every new
// inbound connection: an admitted node that is not a server and connects is
// asked at once. Only inbound: the leader's own dials (readmission's among
// them) are no news of the node, and would undo its backoff.
type leaderConnWatch struct{ r *Raft }

func (w leaderConnWatch) Listen(network.Network, ma.Multiaddr)      {}
func (w leaderConnWatch) ListenClose(network.Network, ma.Multiaddr) {}
func (w leaderConnWatch) Connected(_ network.Network, c network.Conn) {
	if c.Stat().Direction == network.DirInbound {
		w.r.readmitWake(c.RemotePeer())
	}
}
func (w leaderConnWatch) Disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	w.r.spawn(func() { w.r.leaderConnClosed(p) })
}

var _ network.Notifiee = leaderConnWatch{}

// leaderConnClosed enters fast-failover mode if p is our leader, we have
// no connection left to it, and we hold a vote: only a voter can start the
// election that fast failover is for. A non-voter's raft never campaigns,
// and a node just removed (whose connections the leader closes as it
// revokes the key) still remembers its old leader but is no longer in the
// configuration at all; for either, the redial would only be noise.
func (r *Raft) leaderConnClosed(p peer.ID) {
	if r.isClosed() || r.raft.State() != raft.Follower {
		return
	}
	if l, ok := r.Leader(); !ok || l != p || r.host.Network().Connectedness(p) == network.Connected {
		return
	}
	if !r.isVoter() {
		return
	}
	if !r.fastFailover.CompareAndSwap(false, true) {
		return
	}
	defer r.fastFailover.Store(false)
	normal := r.raft.ReloadableConfig()
	fast := normal
	fast.HeartbeatTimeout, fast.ElectionTimeout = r.t.LeaderLease, r.t.LeaderLease
	if err := r.raft.ReloadConfig(fast); err != nil {
		r.log.Debug("fast failover: shortening timeouts failed", "err", err)
		return
	}
	defer func() {
		if err := r.raft.ReloadConfig(normal); err != nil && !r.isClosed() {
			r.log.Warn("fast failover: restoring timeouts failed", "err", err)
		}
	}()
	r.log.Info("connection to the leader closed: fast failover", "leader", p)

	newLeader := func() bool {
		l, ok := r.Leader()
		return ok && l != p
	}
	deadline := time.Now().Add(10 * r.t.Heartbeat)
	switch gone, answered := r.leaderGone(p); {
	case answered:
		return // a spurious disconnect: back to the normal timeouts
	case gone:
		if rank, ok := r.survivorRank(p); ok {
			at := time.Now().Add(time.Duration(rank) * r.t.FailoverStagger)
			r.waitUntil(at, newLeader)
			if !newLeader() && !r.isClosed() && r.raft.State() == raft.Follower {
				r.log.Info("leader is gone: starting an election now", "leader", p, "rank", rank)
				r.startElection()
			}
		}
	}
	r.waitUntil(deadline, newLeader)
}

// waitUntil polls cond every 10ms until it holds, t passes or the node
// shuts down.
func (r *Raft) waitUntil(t time.Time, cond func() bool) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() && time.Now().Before(t) {
		select {
		case <-r.closed:
			return
		case <-tick.C:
		}
	}
}

// leaderGone redials p: gone is true if the dial failed (refused, reset,
// or no answer within Redial: a killed process's QUIC address never
// refuses), answered if it succeeded. The dial backoff a failed dial leaves
// is cleared, so that a restarted leader is not kept waiting.
func (r *Raft) leaderGone(p peer.ID) (gone, answered bool) {
	sw, _ := r.host.Network().(*swarm.Swarm)
	if sw != nil {
		// Our own host closing closes our connections too: never dial then.
		select {
		case <-sw.Done():
			return false, false
		default:
		}
		// A plain dial, not a forced direct one (which also skips the
		// backoff): a forced dial racing the swarm's close dereferences
		// a removed transport and crashes libp2p v0.51. The leader has
		// no connection left (leaderConnClosed checked), so this dials;
		// clearing the backoff first keeps a recent failure from
		// answering for it.
		sw.Backoff().Clear(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.t.Redial)
	defer cancel()
	go func() { // Shutdown cancels the dial rather than wait for it
		select {
		case <-r.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := r.host.Connect(ctx, peer.AddrInfo{ID: p})
	if sw != nil && err != nil {
		sw.Backoff().Clear(p)
	}
	if err == nil {
		r.log.Info("fast failover: the leader answered a redial", "leader", p)
		return false, true
	}
	r.log.Debug("fast failover: redialing the leader failed", "leader", p, "err", err)
	return true, false
}

// survivorRank returns this node's position among the voters of the
// configuration other than the dead leader, in peer-ID order; ok is false
// if this node holds no vote.
func (r *Raft) survivorRank(dead peer.ID) (int, bool) {
	cfg, err := r.configuration()
	if err != nil {
		return 0, false
	}
	var ids []string
	self := false
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == dead.String() {
			continue
		}
		ids = append(ids, string(s.ID))
		if string(s.ID) == r.id.String() {
			self = true
		}
	}
	if !self {
		return 0, false
	}
	sort.Strings(ids)
	return sort.SearchStrings(ids, r.id.String()), true
}

// startElection makes the local raft start an election at once, as the
// target of a leadership transfer does (TimeoutNow).
func (r *Raft) startElection() {
	ctx, cancel := context.WithTimeout(context.Background(), r.t.LeaderLease)
	defer cancel()
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(r.id.String()),
		Addr:            []byte(r.id.String()),
	}}
	if _, err := r.trans.inject(ctx, req); err != nil {
		r.log.Debug("fast failover: starting an election failed", "err", err)
	}
}
