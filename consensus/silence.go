package consensus

import (
	"context"
	"sort"
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
// when Silence would have passed since then (at most every SilencePoll).
// The leader heartbeats every follower every H/10 to H/5 (300–600 ms), so
// once Silence (750 ms) has passed without contact, a heartbeat is overdue
// by at least 150 ms:
//
//  1. The follower asks, at once and on streams of their own, the leader
//     and the other voters for their stats (/hydra/cluster/stats/1.0.0,
//     SilenceProbe deadline, 150 ms). A leader that answers as leader is
//     alive (this node was stalled, or only its raft stream is slow):
//     nothing happens.
//  2. Otherwise, if a majority of the voters (this node included, the
//     leader not) has not heard the leader for at least SilenceAgree
//     (650 ms, more than a heartbeat gap) either, the leader is gone for the
//     cluster, not just for this node: the surviving voters, newest log
//     first and then in peer-ID order (freshRank: a voter that missed the
//     last entries would be refused, and the next would wait a stagger),
//     each wait rank × FailoverStagger and, if still no leader is known, start an election at once as the
//     target of a leadership transfer does (TimeoutNow, fastfail.go), which
//     the others grant although they still remember the old leader.
//  3. Without such a majority nothing happens: the leader is heard by the
//     others, and raft's own timer with pre-vote decides (a node cut off
//     alone never moves the term).
//
// Failover takes up to Silence + SilenceProbe + an election round trip,
// about 0.8 s on a LAN (docs/performance.md, "Failover", has the measurements). A killed
// leader is often faster still (fastfail.go).
//
// Why not a short leader lease and timeouts instead: a leader steps down
// when it has not heard a quorum for its lease, and under CPU saturation a
// stalled leader process did exactly that with a lease of 500 ms (15
// elections in 5 minutes with 8 busy loops on 2 cores). The lease is 1.5 s
// now, and speed comes from this watch, which asks the other voters
// before it acts. It adds no message while the leader is heard, and a few
// small calls when it is not.
func (r *Raft) watchSilence() {
	defer r.wg.Done()
	// Not a fixed poll: the watch sleeps until the moment the leader's silence would reach
	// Silence (last contact + Silence), rechecks, and sleeps again if it was heard meanwhile.
	// It notices a silence as early as a poll would, without waking every SilencePoll while the
	// leader is heard (an idle node's cost: docs/design.md §7).
	// The leader has nobody to watch: it sleeps until it loses the leadership (monitorLeadership
	// kicks it).
	t := time.NewTimer(r.t.SilencePoll)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case <-t.C:
		case <-r.silenceKick.c:
			r.silenceKick.rearm()
		}
		t.Reset(max(r.silenceCheck(), r.t.SilencePoll))
	}
}

// leaderWatchEvery is how often the silence watch looks on the leader, where it has nothing to
// do (it is woken when the leadership is lost).
const leaderWatchEvery = 10 * time.Second

// silenceCheck probes a silent leader (leaderSilent) and returns how long until the next check.
func (r *Raft) silenceCheck() time.Duration {
	switch st := r.raft.State(); {
	case st == raft.Leader:
		return leaderWatchEvery
	case st != raft.Follower || r.fastFailover.Load():
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

// leaderSilent asks the silent leader p and the other voters for their
// stats and, if p does not answer as leader and a majority of the voters
// has not heard it either, starts an election (see watchSilence).
func (r *Raft) leaderSilent(p peer.ID) {
	if !r.fastFailover.CompareAndSwap(false, true) {
		return
	}
	defer r.fastFailover.Store(false)
	silent := time.Since(r.raft.LastContact())
	voters := r.voterIDs()
	ctx, cancel := context.WithTimeout(context.Background(), r.t.SilenceProbe)
	type answer struct {
		from peer.ID
		s    statsResponse
		err  error
	}
	answers := make(chan answer, len(voters))
	asked := 0
	for _, v := range voters {
		if v == r.id {
			continue
		}
		asked++
		go func() {
			var s statsResponse
			err := p2p.Call(ctx, r.host, v, ProtocolStats, struct{}{}, &s)
			answers <- answer{v, s, err}
		}()
	}
	agree, leaderErr := 1, error(nil) // this node has not heard the leader
	logs := map[peer.ID]logPos{}      // the log of every voter that answered, this node's too
	me := r.localStats()
	logs[r.id] = logPos{me.LastTerm, me.LastIndex}
	for range asked {
		a := <-answers
		switch {
		case a.from == p:
			if a.err == nil && a.s.LastContact == 0 {
				cancel()
				r.log.Debug("silent leader answered a probe", "leader", p, "silent", silent)
				return
			}
			leaderErr = a.err
		case a.err == nil:
			logs[a.from] = logPos{a.s.LastTerm, a.s.LastIndex}
			if a.s.LastContact < 0 || a.s.LastContact >= r.t.SilenceAgree {
				agree++
			}
		}
	}
	cancel()
	quorum := len(voters)/2 + 1
	if agree < quorum {
		r.log.Debug("silent leader: the other voters still hear it", "leader", p, "silent", silent, "agree", agree, "voters", len(voters))
		return
	}
	newLeader := func() bool {
		l, ok := r.Leader()
		return ok && l != p
	}
	rank, ok := freshRank(r.id, p, voters, logs)
	if !ok {
		return
	}
	r.waitUntil(time.Now().Add(time.Duration(rank)*r.t.FailoverStagger), newLeader)
	if l, ok := r.Leader(); !ok || l != p || time.Since(r.raft.LastContact()) < r.t.Silence || r.raft.State() != raft.Follower {
		return // heard from it meanwhile, or raft moved on by itself
	}
	r.log.Info("leader silent: a majority of voters agrees, starting an election", "leader", p,
		"silent", time.Since(r.raft.LastContact()).Round(time.Millisecond), "agree", agree, "voters", len(voters), "rank", rank, "probe", errString(leaderErr))
	r.startElection()
	r.waitUntil(time.Now().Add(10*r.t.Heartbeat), newLeader)
}

// voterIDs returns the voters of the latest configuration.
func (r *Raft) voterIDs() []peer.ID {
	cfg, err := r.configuration()
	if err != nil {
		return nil
	}
	var out []peer.ID
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if id, err := peer.Decode(string(s.ID)); err == nil {
			out = append(out, id)
		}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "answered, not as leader"
	}
	return err.Error()
}

// logPos is the end of a replica's raft log: an election needs a candidate
// whose log is at least as new as a majority's.
type logPos struct{ term, index uint64 }

// newer reports whether a ends after b (raft's up-to-date rule).
func (a logPos) newer(b logPos) bool {
	return a.term > b.term || a.term == b.term && a.index > b.index
}

// freshRank returns self's place among the voters other than the dead
// leader: those whose log is newest first (a voter that has not seen the
// last entries would be refused by those that have, and its failed election
// would cost a FailoverStagger), then in peer-ID order; voters whose log is
// not known (they did not answer) come last. ok is false if self is not a
// surviving voter. Every survivor ranks from the same answers, so they
// agree on the order while the leader is silent and no log moves.
func freshRank(self, dead peer.ID, voters []peer.ID, logs map[peer.ID]logPos) (int, bool) {
	var order []peer.ID
	for _, v := range voters {
		if v != dead {
			order = append(order, v)
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, aok := logs[order[i]]
		b, bok := logs[order[j]]
		switch {
		case aok != bok:
			return aok
		case aok && a != b:
			return a.newer(b)
		}
		return order[i].String() < order[j].String()
	})
	for i, v := range order {
		if v == self {
			return i, true
		}
	}
	return 0, false
}
