package consensus

// Readmission: the leader brings back admitted nodes that are not servers of
// its configuration. A node removed (hydra remove) and approved again, or a
// non-voter autopilot removed as failed, keeps its raft state: it believes
// it is still a server of its old configuration, so it asks to be added
// again only if it finds a member to ask (rejoin, which needs discovery:
// mDNS, --join, the DHT). Restarted with none of them, it only campaigns in
// its old configuration, where every pre-vote fails, and nobody dials it:
// the leader replicates only to the servers of its configuration. So the
// leader asks such a node itself, at the addresses its peerstore still
// holds, and adds it back as a non-voter when it answers that it is in
// this cluster, as if it had asked to join; the voter rules then decide
// its vote.
//
// The tries back off to MemberIdle, so a node that comes back after a long
// absence would wait up to that long, and one whose addresses the leader
// has forgotten (or that restarted on another port) would be asked at
// none that works. So a connection from such a node (inbound: the Notifiee
// in fastfail.go, readmitWake) resets its backoff and wakes the membership
// loop: it is asked at the next round, over that connection or at the
// addresses identify has just put in the peerstore. A node that connects
// and disconnects again and again is still asked at most once every
// readmitGap.

import (
	"context"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxReadmitRound bounds the nodes the leader asks in one round of
// readmitMembers (the others wait for the next).
const maxReadmitRound = 16

// readmitState is the leader's schedule of the admitted nodes it asks
// (readmitMembers): when each is asked next, and the wait that doubles
// after each try, from MemberPoll to MemberIdle, so that a node that stays
// away costs one dial every MemberIdle at most.
type readmitState struct {
	mu   sync.Mutex
	next map[peer.ID]readmitTry
}

type readmitTry struct {
	at   time.Time     // the next try is due then
	wait time.Duration // the wait after the next try (doubled each try)
	last time.Time     // the last try (zero: none yet)
	kick time.Time     // a wake's timer kicks the membership loop then (wake)
}

// readmitGap is the shortest time between two tries at one node, however
// often it connects (readmitWake): MemberPoll, at least a second.
func (r *Raft) readmitGap() time.Duration { return max(r.t.MemberPoll, time.Second) }

// due returns the admitted non-servers (ids) whose next try has come, at
// most maxReadmitRound, schedules their next tries, and forgets the nodes
// no longer in ids.
func (s *readmitState) due(ids []peer.ID, now time.Time, first, most time.Duration) []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[peer.ID]readmitTry, len(ids))
	var out []peer.ID
	for _, p := range ids {
		t, ok := s.next[p]
		if (!ok || !now.Before(t.at)) && len(out) < maxReadmitRound {
			out = append(out, p)
			t.wait = min(max(2*t.wait, first), most)
			t.at = now.Add(t.wait)
			t.last = now
		}
		keep[p] = t
	}
	s.next = keep
	return out
}

// wake makes p's next try due at once, its backoff reset, but not before
// gap after its last try, and returns when it is due; ok is false if p is
// not in the schedule (not an admitted non-server at the last round). When
// that is later than now, arm tells the caller to start a timer that wakes
// the loop then: false if an earlier wake armed one for that time already,
// so that a node connecting again and again costs one timer per gap.
func (s *readmitState) wake(p peer.ID, now time.Time, gap time.Duration) (at time.Time, arm, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.next[p]
	if !ok {
		return time.Time{}, false, false
	}
	at = now
	if !t.last.IsZero() && at.Before(t.last.Add(gap)) {
		at = t.last.Add(gap)
	}
	if at.After(now) && !at.Equal(t.kick) {
		t.kick, arm = at, true
	}
	t.at, t.wait = at, 0
	s.next[p] = t
	return at, arm, true
}

// readmitWake is called with every new inbound connection (Notifiee, so it
// must be cheap and never block): on the leader, a node of the readmission
// schedule that connects is asked at the next round of the membership
// loop, which it wakes, at once or, within readmitGap of its last try,
// once the gap has passed.
func (r *Raft) readmitWake(p peer.ID) {
	if r.isClosed() || !r.IsLeader() {
		return
	}
	now := time.Now()
	at, arm, ok := r.readmit.wake(p, now, r.readmitGap())
	switch {
	case !ok:
	case !at.After(now):
		r.log.Debug("an admitted node that is not a server connected: asking it now", "peer", p)
		r.memberKick.kick()
	case arm:
		time.AfterFunc(at.Sub(now), r.memberKick.kick)
	}
}

// readmitMembers runs on the leader (Run): every admitted node (allow-list
// entry, key not revoked) that is not a server of the configuration and
// whose try is due is asked for its info, concurrently, and added back as
// a non-voter if it answers that it is in this cluster (readmit).
func (r *Raft) readmitMembers(ctx context.Context) {
	st := r.fsm.State()
	if !st.Initialized() {
		return
	}
	var ids []peer.ID
	for id := range st.Members {
		p, err := peer.Decode(id)
		if err != nil || p == r.id || st.Revoked[id] || r.hasServer(p) {
			continue
		}
		ids = append(ids, p)
	}
	due := r.readmit.due(ids, time.Now(), r.t.MemberPoll, r.t.MemberIdle)
	var wg sync.WaitGroup
	for _, p := range due {
		if len(r.host.Peerstore().Addrs(p)) == 0 && r.host.Network().Connectedness(p) != network.Connected {
			continue // no address to dial: it comes back through discovery (rejoin)
		}
		wg.Go(func() { r.readmitOne(ctx, p, st.Members[p.String()].Name) })
	}
	wg.Wait()
}

// readmitOne asks admitted node p for its info and, if it is in this
// cluster (it has raft state of this cluster ID) but not a server here,
// adds it as a non-voter under memberMu, exactly as its own join request
// would (admitAndAdd: a deny, an eviction or a leave that came meanwhile
// wins). A node without raft state is left to join by itself.
func (r *Raft) readmitOne(ctx context.Context, p peer.ID, name string) {
	cctx, cancel := context.WithTimeout(ctx, r.t.RPC)
	var in infoResponse
	err := p2p.CallLimit(cctx, r.host, p, ProtocolInfo, maxInfoAnswer, struct{}{}, &in)
	cancel()
	if err != nil {
		r.log.Debug("an admitted node that is not a server did not answer", "peer", p, "err", err)
		return
	}
	if in.Cluster != r.cfg.Cluster || !in.InCluster || in.ClusterID == "" || in.ClusterID != r.fsm.State().ClusterID {
		return
	}
	req := membershipRequest{Cluster: r.cfg.Cluster, ID: p.String(), Name: name, Voter: in.Voter}
	resp, grow, err := r.admitAndAdd(ctx, p, req)
	if err != nil {
		r.log.Warn("re-adding an admitted node failed", "peer", p, "err", err)
		return
	}
	if resp.Changed {
		r.log.Info("re-added an admitted node that was not a server", "peer", p)
	}
	if grow {
		r.growVoters(ctx)
	}
}
