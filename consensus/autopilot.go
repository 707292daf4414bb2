package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Keys of autopilot Server.Meta: the node's VoterPref from the replicated
// NodeMeta, and its Availability from its latest stats answer.
const (
	metaVoter   = "voter"
	metaAvail   = "avail"   // "1" once the server answered a stats call in this leadership
	metaBattery = "battery" // "1" while on battery
	metaPaused  = "paused"  // paused share, 0–1, as a decimal
	metaRevoked = "revoked" // "1": its key is revoked (evicted or denied), its removal not done yet
)

// maxTrailingLogs is how far behind the leader a server may be and still
// count as healthy (promotable).
const maxTrailingLogs = 500

// statsResponse answers /hydra/cluster/stats/1.0.0: what autopilot needs to
// judge a server's health.
type statsResponse struct {
	LastContact time.Duration `json:"last_contact"` // since the leader was heard; -1: never; 0 on the leader
	LastTerm    uint64        `json:"last_term"`
	LastIndex   uint64        `json:"last_index"`
	// Avail is the node's fitness to hold a vote (nil from a node whose
	// Config.Availability is unset).
	Avail *Availability `json:"avail,omitempty"`
}

func (r *Raft) localStats() statsResponse {
	s := statsResponse{LastIndex: r.raft.LastIndex()}
	if r.cfg.Availability != nil {
		a := r.cfg.Availability()
		s.Avail = &a
	}
	var l raft.Log
	if err := r.st.logs.GetLog(s.LastIndex, &l); err == nil {
		s.LastTerm = l.Term
	} else {
		s.LastTerm = r.lastLogTerm() // compacted: raft's Stats knows (costlier)
	}
	switch lc := r.raft.LastContact(); {
	case r.raft.State() == raft.Leader:
		s.LastContact = 0
	case lc.IsZero():
		s.LastContact = -1
	default:
		s.LastContact = time.Since(lc)
	}
	return s
}

// statsRequest is the body of a stats call: empty from the leader's
// autopilot; Changed from a server telling the leader that its
// Availability changed (AvailabilityChanged). A leader that does not know
// the field answers it as a plain call.
type statsRequest struct {
	Changed bool `json:"changed,omitempty"`
}

func (r *Raft) handleStats(_ context.Context, from peer.ID, raw json.RawMessage) (any, error) {
	if l, ok := r.Leader(); ok && l == from {
		r.statCalls.Add(1) // the leader's: not another voter's silence probe (silence.go)
	}
	var req statsRequest
	if len(raw) > 0 && json.Unmarshal(raw, &req) == nil && req.Changed && r.IsLeader() {
		r.del.forget(raft.ServerID(from.String())) // ask it at the next update
		r.apKick.kick()
	}
	return r.localStats(), nil
}

// AvailabilityChanged tells the leader at once that this node's
// Availability changed in a way the promoter weighs (on battery or not,
// rarely paused or not: the node compares), rather than at its next stats
// call, which a quiet cluster makes only every statsRefresh: on the leader
// it wakes the brisk autopilot, whose first update reads it (pace.go); a
// follower sends the leader a stats call that says so. Best effort: the
// next call would carry it anyway.
func (r *Raft) AvailabilityChanged() {
	if r.IsLeader() {
		r.apKick.kick()
		return
	}
	leader, ok := r.Leader()
	if !ok {
		return
	}
	r.spawn(func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.t.RPC)
		defer cancel()
		var s statsResponse
		if err := p2p.Call(ctx, r.host, leader, ProtocolStats, statsRequest{Changed: true}, &s); err != nil {
			r.log.Debug("telling the leader of a changed availability failed", "err", err)
		}
	})
}

// desiredVoters is the voter count the promoter aims at for a configuration
// of n servers: the replicated setting, else 3, and 5 from 7 servers on.
// Servers that died stay in the configuration for DeadNonvoterGrace, so a
// brief absence does not flip the count.
func (r *Raft) desiredVoters(n int) int {
	v := r.fsm.State().Voters
	if v == 0 && !r.fsm.State().Initialized() {
		v = r.cfg.Voters
	}
	if v > 0 {
		return v
	}
	if n >= 7 {
		return 5
	}
	return 3
}

// delegate is autopilot's ApplicationIntegration: known servers come from
// the raft configuration and the cluster state, liveness from successful
// stats calls only. An open libp2p connection is no evidence of life: QUIC
// keeps a connection to a SIGKILLed peer "connected" until its idle timeout
// (~30s), TCP one over a pulled cable until keepalives give up.
type delegate struct {
	r        *Raft
	mu       sync.Mutex
	lastSeen map[raft.ServerID]time.Time
	removing map[raft.ServerID]bool
	avail    map[raft.ServerID]Availability // from the latest stats answers
	state    *autopilot.State
	seq      uint64                       // states notified so far
	quiet    map[raft.ServerID]quietStats // answers that stand while the log does not move
}

// statsReuse is how long a server's stats answer stands in for a new call while the cluster is
// quiet: the leader's log has not moved since the answer (no write, no configuration change).
// The answers are the evidence of life KnownServers judges by, so the reuse is at most a quarter
// of DeadVoterGrace (10 s by default). A server that did not answer is asked on every round.
const statsReuse = 3 * time.Second

// statsRefresh is how long an answer stands while the log does not move AND the server keeps
// answering the leader's heartbeats (transport.lastAnswer): a heartbeat answered is evidence of
// life as good as a stats call, and with the log still its index and term are those of the
// answer, so an idle cluster asks each server once per statsRefresh, for its Availability (a
// laptop on battery loses its vote that much later), instead of opening a stream to every server
// every few seconds (docs/design.md §7 "Idle cost").
const statsRefresh = 30 * time.Second

// quietStats is a server's last stats answer, when it came and the leader's last log index then.
type quietStats struct {
	stats autopilot.ServerStats
	at    time.Time
	index uint64
}

var _ autopilot.ApplicationIntegration = (*delegate)(nil)

func newDelegate(r *Raft) *delegate {
	return &delegate{r: r, lastSeen: map[raft.ServerID]time.Time{}, removing: map[raft.ServerID]bool{},
		avail: map[raft.ServerID]Availability{}, quiet: map[raft.ServerID]quietStats{}}
}

// AutopilotConfig returns the health thresholds, scaled by the multiplier.
func (d *delegate) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    d.r.t.LastContactMax,
		MaxTrailingLogs:         maxTrailingLogs,
		ServerStabilizationTime: d.r.t.Stabilization,
	}
}

// NotifyState keeps the latest autopilot state for introspection.
func (d *delegate) NotifyState(s *autopilot.State) {
	d.mu.Lock()
	d.state = s
	d.seq++
	d.mu.Unlock()
}

// reset forgets the liveness evidence of a previous leadership: every
// server gets a full grace from the start of this one.
func (d *delegate) reset() {
	d.mu.Lock()
	clear(d.lastSeen)
	clear(d.avail)
	clear(d.quiet)
	d.mu.Unlock()
}

// FetchServerStats asks every server for its stats, concurrently, within
// ctx (autopilot gives it half a tick). A server that does not answer gets
// LastContact -1, which autopilot reads as unhealthy (instead of keeping its
// previous, stale stats). A successful answer is the evidence of life that
// KnownServers judges by. Autopilot only asks about servers it does not
// consider failed, so the failed ones of the configuration are probed too
// (and left out of the answer): one that comes back is alive again. While
// the log does not move, an answer stands for statsReuse (quietStats), and
// for statsRefresh while the server also answers the leader's heartbeats.
func (d *delegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	probe := map[raft.ServerID]bool{}
	for id := range servers {
		probe[id] = true
	}
	if cfg, err := d.r.configuration(); err == nil {
		for _, s := range cfg.Servers {
			if _, ok := probe[s.ID]; !ok {
				probe[s.ID] = false
			}
		}
	}
	index, now := d.r.raft.LastIndex(), time.Now()
	reuse := min(statsReuse, d.r.cfg.DeadVoterGrace/4)
	for id, wanted := range probe {
		d.mu.Lock()
		q, ok := d.quiet[id]
		d.mu.Unlock()
		if wanted && ok && q.index == index {
			if hb := d.r.trans.lastAnswer(id); now.Sub(q.at) < statsRefresh && hb.After(q.at) && now.Sub(hb) < d.r.t.LastContactMax {
				s := q.stats
				s.LastContact = max(now.Sub(hb), 0) // it heard the leader when it answered
				mu.Lock()
				out[id] = &s
				mu.Unlock()
				continue
			}
			if now.Sub(q.at) < reuse {
				s := q.stats
				mu.Lock()
				out[id] = &s
				mu.Unlock()
				continue
			}
		}
		if string(id) == d.r.id.String() {
			s := d.r.localStats()
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: s.LastContact, LastTerm: s.LastTerm, LastIndex: s.LastIndex}
			mu.Unlock()
			d.noteAvail(id, s.Avail)
			continue
		}
		p, err := peer.Decode(string(id))
		if err != nil {
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: -1}
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s statsResponse
			err := p2p.Call(ctx, d.r.host, p, ProtocolStats, struct{}{}, &s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if wanted {
					out[id] = &autopilot.ServerStats{LastContact: -1}
				}
				d.mu.Lock()
				delete(d.quiet, id)
				d.mu.Unlock()
				return
			}
			st := autopilot.ServerStats{LastContact: s.LastContact, LastTerm: s.LastTerm, LastIndex: s.LastIndex}
			if wanted {
				out[id] = &st
			}
			d.mu.Lock()
			d.lastSeen[id] = time.Now()
			d.quiet[id] = quietStats{stats: st, at: now, index: index}
			d.mu.Unlock()
			d.noteAvail(id, s.Avail)
		}()
	}
	wg.Wait()
	return out
}

// forget drops id's stats answer, so that the next update asks it again.
func (d *delegate) forget(id raft.ServerID) {
	d.mu.Lock()
	delete(d.quiet, id)
	d.mu.Unlock()
}

// noteAvail keeps the Availability a server reported in a stats answer; an
// answer without one, or with values out of range, counts as a fit node.
// A change of fitness wakes the brisk autopilot (pace.go).
func (d *delegate) noteAvail(id raft.ServerID, a *Availability) {
	v := Availability{}
	if a != nil && a.valid() {
		v = *a
	}
	d.mu.Lock()
	old, ok := d.avail[id]
	d.avail[id] = v
	d.mu.Unlock()
	if (!ok || !old.SameFitness(v)) && d.r != nil {
		d.r.apKick.kick()
	}
}

// KnownServers returns every server of the raft configuration (so none is
// ever "stale" and removed at once), with its name and voter preference
// from the cluster state and a status: failed once it has answered neither
// a stats call nor a heartbeat of this leader for longer than its grace
// (DeadVoterGrace for voters, whose vote is needed; DeadNonvoterGrace for
// non-voters), alive again as soon as it does. A dead voter is thus
// replaced about DeadVoterGrace plus an autopilot tick after its last
// answer, whatever its connection looks like.
func (d *delegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	cfg, err := d.r.configuration()
	if err != nil {
		return nil
	}
	st := d.r.fsm.State()
	_, leader := d.r.raft.LeaderWithID()
	now := time.Now()
	out := make(map[raft.ServerID]*autopilot.Server, len(cfg.Servers))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range cfg.Servers {
		meta := st.Nodes[string(s.ID)]
		if st.Members[string(s.ID)].Role == RoleWorker {
			meta.Voter = VoterNever // a worker never holds a vote
		}
		srv := &autopilot.Server{
			ID: s.ID, Address: s.Address, Name: meta.Name, Version: meta.Version,
			Meta:        map[string]string{metaVoter: meta.Voter.String()},
			RaftVersion: raft.ProtocolVersionMax,
			IsLeader:    s.ID == leader,
			NodeStatus:  autopilot.NodeAlive,
			NodeType:    nodeType(meta.Voter),
		}
		if a, ok := d.avail[s.ID]; ok {
			srv.Meta[metaAvail] = "1"
			if a.OnBattery {
				srv.Meta[metaBattery] = "1"
			}
			srv.Meta[metaPaused] = strconv.FormatFloat(a.Paused, 'f', 3, 64)
		}
		if string(s.ID) != d.r.id.String() {
			seen, ok := d.lastSeen[s.ID]
			if !ok { // first sight in this leadership: grant a full grace
				d.lastSeen[s.ID], seen = now, now
			}
			if hb := d.r.trans.lastAnswer(s.ID); hb.After(seen) { // a heartbeat answered is life too
				d.lastSeen[s.ID], seen = hb, hb
			}
			grace := d.r.cfg.DeadNonvoterGrace
			if s.Suffrage == raft.Voter {
				grace = d.r.cfg.DeadVoterGrace
			}
			if now.Sub(seen) > grace {
				srv.NodeStatus = autopilot.NodeFailed
			}
		}
		// Every member refuses a revoked key: such a server cannot vote or answer, whatever it
		// answered a moment ago, so it is failed from the entry on, not a grace later, and the
		// promoter ranks it below every other server (its vote goes first, never a good one's).
		if _, revoked := d.r.fsm.peerRole(string(s.ID)); revoked {
			srv.Meta[metaRevoked] = "1"
			srv.NodeStatus = autopilot.NodeFailed
		}
		out[s.ID] = srv
	}
	// A leader leads for weeks while servers are removed: what it knew of each goes with it.
	maps.DeleteFunc(d.lastSeen, func(id raft.ServerID, _ time.Time) bool { return out[id] == nil })
	maps.DeleteFunc(d.avail, func(id raft.ServerID, _ Availability) bool { return out[id] == nil })
	maps.DeleteFunc(d.quiet, func(id raft.ServerID, _ quietStats) bool { return out[id] == nil })
	return out
}

// RemoveFailedServer removes a failed server in the background (autopilot
// requires it to return at once): raft configuration first, then its
// NodeMeta, under memberMu like every membership change, and not while a
// voter whose key is revoked is still in the configuration if the server
// votes (autopilotChangeWaits; autopilot asks again at a later round).
func (d *delegate) RemoveFailedServer(s *autopilot.Server) {
	d.mu.Lock()
	if d.removing[s.ID] {
		d.mu.Unlock()
		return
	}
	d.removing[s.ID] = true
	d.mu.Unlock()
	d.r.wg.Add(1)
	go func() {
		defer d.r.wg.Done()
		defer func() {
			d.mu.Lock()
			delete(d.removing, s.ID)
			d.mu.Unlock()
		}()
		p, err := peer.Decode(string(s.ID))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*d.r.t.Apply)
		defer cancel()
		go func() { // the node shutting down ends the removal too
			select {
			case <-d.r.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		d.r.lockMembers(p)
		defer d.r.memberMu.Unlock()
		if !d.r.hasServer(p) {
			return
		}
		if err := d.r.autopilotChangeWaits(p); err != nil {
			d.r.log.Info("removing failed server waits", "peer", p, "err", err)
			return
		}
		d.r.log.Info("removing failed server", "peer", p)
		if _, err := d.r.removeServer(ctx, p); err != nil {
			d.r.log.Warn("removing failed server", "peer", p, "err", err)
		}
	}()
}

// autopilotChangeWaits runs on the leader, under memberMu, before autopilot
// takes a vote from p (a demotion or a removal): it waits (ErrConflict)
// while another voter whose key is revoked is still in the configuration,
// as an eviction or a leave does (evictionWaits, leaveWaits). Three voters,
// one of them revoked: demoting one of the two others leaves two voters,
// one refused by everyone, and that configuration commits nothing, not
// even the demotion — no leader, for good. A revoked p itself may go: its
// vote never counted.
func (r *Raft) autopilotChangeWaits(p peer.ID) error {
	return r.revokedVoterWaits(p, fmt.Sprintf("%s keeps its vote until it has", p))
}

// apRaft is the raft that autopilot drives: hashicorp raft, with autopilot's
// configuration changes made as every other membership change is made, on
// the leader under memberMu, one at a time with joins, leaves and
// evictions. A demotion or a removal waits while a revoked voter is still
// in the configuration (autopilotChangeWaits); a revoked server is never
// promoted. A change that waits fails: autopilot logs it and decides again
// at its next round. Autopilot passes no enqueue timeout; with memberMu
// held, raft gets one (Timings.Apply), as for the other changes.
type apRaft struct {
	*raft.Raft
	r *Raft
}

var _ autopilot.Raft = apRaft{}

// AddVoter promotes id unless its key is revoked or it is a worker. Both are decided again here,
// under memberMu: autopilot decided from a state read before, and a member non-voter it chose may
// have been evicted and approved again as a worker since (a worker never holds a vote).
func (a apRaft) AddVoter(id raft.ServerID, addr raft.ServerAddress, prev uint64, _ time.Duration) raft.IndexFuture {
	return a.r.autopilotChange("promote", id, func(p peer.ID) error {
		role, revoked := a.r.fsm.peerRole(p.String())
		if revoked {
			return kinded(ErrConflict, errors.New("its key is revoked"))
		}
		if role == RoleWorker {
			return kinded(ErrConflict, errors.New("it is a worker, which never holds a vote"))
		}
		return nil
	}, func() raft.IndexFuture { return a.Raft.AddVoter(id, addr, prev, a.r.t.Apply) })
}

// DemoteVoter demotes id unless that must wait (autopilotChangeWaits).
func (a apRaft) DemoteVoter(id raft.ServerID, prev uint64, _ time.Duration) raft.IndexFuture {
	return a.r.autopilotChange("demote", id, a.r.autopilotChangeWaits,
		func() raft.IndexFuture { return a.Raft.DemoteVoter(id, prev, a.r.t.Apply) })
}

// RemoveServer removes id unless that must wait (autopilotChangeWaits).
func (a apRaft) RemoveServer(id raft.ServerID, prev uint64, _ time.Duration) raft.IndexFuture {
	return a.r.autopilotChange("remove", id, a.r.autopilotChangeWaits,
		func() raft.IndexFuture { return a.Raft.RemoveServer(id, prev, a.r.t.Apply) })
}

// autopilotChange makes one of autopilot's changes of server id under
// memberMu, if check lets it, and waits until it is committed (or fails).
func (r *Raft) autopilotChange(what string, id raft.ServerID, check func(peer.ID) error, change func() raft.IndexFuture) raft.IndexFuture {
	p, err := peer.Decode(string(id))
	if err != nil {
		return doneFuture{err: fmt.Errorf("autopilot: %s %q: %w", what, id, err)}
	}
	r.lockMembers(p)
	defer r.memberMu.Unlock()
	if err := check(p); err != nil {
		return doneFuture{err: fmt.Errorf("autopilot: %s %s: %w", what, p, err)}
	}
	f := change()
	if err := r.await(context.Background(), f); err != nil {
		return doneFuture{err: fmt.Errorf("autopilot: %s %s: %w", what, p, err)}
	}
	return doneFuture{index: f.Index()}
}

// doneFuture is a raft.IndexFuture already decided.
type doneFuture struct {
	index uint64
	err   error
}

func (f doneFuture) Error() error  { return f.err }
func (f doneFuture) Index() uint64 { return f.index }
