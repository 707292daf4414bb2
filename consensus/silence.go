package consensus

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Fast failover on a silent leader.
//
// A leader whose cable is cut, whose lid is closed or whose power is lost
// sends no reset: its connections just go quiet. hashicorp/raft notices
// through the follower timer, which fires at a random point in [H, 2H) and
// only then checks whether the leader was heard within H; with pre-vote, the
// first survivor to fire is refused by every voter whose own timer has not
// fired yet (they still know a leader), and retries an election timeout
// later. That took 2.2–2.3 s with H = 1 s in network namespaces.
//
// The silence watch is a cheap failure detector beside raft's timer. A
// voting follower reads raft's last contact with its leader (a memory read)
// when Silence would have passed since then (at most every SilencePoll). The leader heartbeats every follower every H/10
// to H/5 (100–200 ms), so once Silence (500 ms, = the leader lease) has
// passed without contact, at least two heartbeats in a row were lost:
//
//  1. The follower probes the leader on a stream of its own: a stats call
//     (/hydra/cluster/stats/1.0.0) with a SilenceProbe (150 ms) deadline.
//     A leader that answers as leader is alive (this node was stalled, or
//     only its raft stream is slow): nothing happens.
//  2. Otherwise the follower shortens its heartbeat and election timeouts
//     to the lease (raft's ReloadConfig, which re-arms the follower timer at
//     once) and raft starts an ordinary election with pre-vote, then the
//     timeouts are restored once a new leader is known. Pre-vote keeps a
//     false alarm harmless: voters that still hear the leader refuse, the
//     term does not move and the leader's next heartbeat turns the would-be
//     candidate back into a follower.
//
// Every surviving voter detects the silence within a heartbeat interval of
// the others, so the pre-vote of the last one to notice succeeds: failover
// takes Silence + SilenceProbe + up to a heartbeat interval and an election
// round trip, about 0.7–1 s on a LAN (docs/internals.md has the
// measurements). A killed leader is faster still (fastfail.go).
//
// Why not simply a shorter H: raft's heartbeats every H/10 would cost more
// when idle, and the random firing window [H, 2H) still stacks on top of
// the pre-vote refusals. The watch adds no message while the leader is
// heard, and one small call when it is not.
func (r *Raft) watchSilence() {
	defer r.wg.Done()
	// Not a fixed poll: the watch sleeps until the moment the leader's silence would reach
	// Silence (last contact + Silence), rechecks, and sleeps again if it was heard meanwhile.
	// It notices a silence as early as a poll would, without waking every SilencePoll while the
	// leader is heard (an idle node's cost: docs/design.md §7).
	t := time.NewTimer(r.t.SilencePoll)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case <-t.C:
		}
		t.Reset(max(r.silenceCheck(), r.t.SilencePoll))
	}
}

// silenceCheck probes a silent leader (leaderSilent) and returns how long until the next check.
func (r *Raft) silenceCheck() time.Duration {
	if r.raft.State() != raft.Follower || r.fastFailover.Load() {
		return r.t.Silence
	}
	if since := time.Since(r.raft.LastContact()); since < r.t.Silence {
		return r.t.Silence - since
	}
	leader, ok := r.Leader()
	if !ok || leader == r.id || !r.isVoter() {
		return r.t.Silence
	}
	r.leaderSilent(leader)
	return r.t.SilencePoll
}

// isVoter reports whether this node holds a vote in the latest
// configuration (only voters can win an election; a non-voter's timer
// never starts one).
func (r *Raft) isVoter() bool {
	cfg, err := r.configuration()
	if err != nil {
		return false
	}
	for _, s := range cfg.Servers {
		if string(s.ID) == r.id.String() {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// leaderSilent probes the silent leader p and, if it does not answer as
// leader, makes raft start a pre-vote election now (see watchSilence).
func (r *Raft) leaderSilent(p peer.ID) {
	if !r.fastFailover.CompareAndSwap(false, true) {
		return
	}
	defer r.fastFailover.Store(false)
	silent := time.Since(r.raft.LastContact())
	ctx, cancel := context.WithTimeout(context.Background(), r.t.SilenceProbe)
	var s statsResponse
	err := p2p.Call(ctx, r.host, p, ProtocolStats, struct{}{}, &s)
	cancel()
	if err == nil && s.LastContact == 0 {
		r.log.Debug("silent leader answered a probe", "leader", p, "silent", silent)
		return
	}
	if l, ok := r.Leader(); !ok || l != p || time.Since(r.raft.LastContact()) < r.t.Silence || r.raft.State() != raft.Follower {
		return // heard from it meanwhile, or raft moved on by itself
	}
	normal := r.raft.ReloadableConfig()
	fast := normal
	fast.HeartbeatTimeout, fast.ElectionTimeout = r.t.LeaderLease, r.t.LeaderLease
	r.log.Info("leader silent: starting a pre-vote election", "leader", p, "silent", time.Since(r.raft.LastContact()).Round(time.Millisecond), "probe", errString(err))
	if err := r.raft.ReloadConfig(fast); err != nil {
		r.log.Debug("silence watch: shortening timeouts failed", "err", err)
		return
	}
	defer func() {
		if err := r.raft.ReloadConfig(normal); err != nil && !r.isClosed() {
			r.log.Warn("silence watch: restoring timeouts failed", "err", err)
		}
	}()
	r.waitUntil(time.Now().Add(10*r.t.Heartbeat), func() bool {
		l, ok := r.Leader()
		return ok && l != p
	})
}

func errString(err error) string {
	if err == nil {
		return "answered, not as leader"
	}
	return err.Error()
}
