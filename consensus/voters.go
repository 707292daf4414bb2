package consensus

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Voters from the start.
//
// A cluster must survive the loss of its leader from the moment it shows
// three members. Autopilot promotes a non-voter only after it has been
// healthy for the stabilization time, on a tick, which is right for later
// promotions and replacements (a flapping node must not take a vote) but
// leaves a young cluster with a single voter for seconds: nodes started
// together, a job submitted at once and the founder killed, and nobody can
// be elected. So, while the cluster has fewer voters than it wants, the
// leader gives eligible members a vote as they join (growVoters), from the
// join handler itself.
//
// Never to an even count: a second voter adds no fault tolerance (a
// majority of two is two) and doubles what must be up, so the count goes
// from one voter to three as soon as two eligible non-voters are there, and
// from three to five likewise. The promoter keeps the same rule.

// growState serialises growVoters (joins arrive concurrently) and keeps the
// voter preferences joiners announced, until their NodeMeta is replicated.
type growState struct {
	run   sync.Mutex // one growVoters at a time
	mu    sync.Mutex // guards prefs
	prefs map[peer.ID]VoterPref
}

// notePref records the preference a joiner sent with its join request.
func (g *growState) notePref(p peer.ID, v VoterPref) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.prefs == nil {
		g.prefs = map[peer.ID]VoterPref{}
	}
	if len(g.prefs) >= maxNodes {
		clear(g.prefs)
	}
	g.prefs[p] = v
}

// prefOf is p's voter preference: the replicated NodeMeta, else what it
// said when it joined, else auto.
func (r *Raft) prefOf(p peer.ID, st ClusterState) VoterPref {
	if st.Members[p.String()].Role == RoleWorker {
		return VoterNever // a worker never holds a vote
	}
	if m, ok := st.Nodes[p.String()]; ok {
		return m.Voter
	}
	r.grow.mu.Lock()
	defer r.grow.mu.Unlock()
	return r.grow.prefs[p]
}

// oddStep returns how many of n candidates to promote when the cluster has
// voters voters and wants want: as many as fill the gap, but never ending
// on an even count below want.
func oddStep(voters, want, n int) int {
	k := min(want-voters, n)
	if k <= 0 {
		return 0
	}
	if (voters+k)%2 == 0 && voters+k < want {
		k--
	}
	return k
}

// growVoters runs on the leader after a join: while the configuration has
// fewer voters than wanted, it promotes eligible non-voters that answer a
// stats call now (most caught-up first, mains before battery), never to an
// even count. It returns the number promoted.
//
// The stats calls take up to an RPC timeout and go out without memberMu
// (joins must not wait for them); the promotions are decided again under
// memberMu, like every other membership change, from the configuration as
// it is then (growCandidates): a candidate removed, evicted or promoted
// meanwhile drops out, and the count is that of the voters of that moment.
// Before, a candidate that left or was evicted during the calls was added
// back as a voter (raft's AddVoter adds a server it does not have).
func (r *Raft) growVoters(ctx context.Context) int {
	r.grow.run.Lock()
	defer r.grow.run.Unlock()
	voters, ids, want, ok := r.growCandidates()
	if !ok || oddStep(voters, want, len(ids)) == 0 {
		return 0
	}
	type cand struct {
		id      peer.ID
		battery bool
		index   uint64
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		cands []cand
	)
	cctx, cancel := context.WithTimeout(ctx, r.t.RPC)
	defer cancel()
	for _, p := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s statsResponse
			if err := p2p.Call(cctx, r.host, p, ProtocolStats, struct{}{}, &s); err != nil {
				r.log.Debug("growing voters: no stats answer", "peer", p, "err", err)
				return
			}
			mu.Lock()
			cands = append(cands, cand{id: p, battery: s.Avail != nil && s.Avail.OnBattery, index: s.LastIndex})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if oddStep(voters, want, len(cands)) == 0 {
		return 0
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.battery != b.battery {
			return !a.battery
		}
		if a.index != b.index {
			return a.index > b.index
		}
		return a.id < b.id
	})

	r.lockMembers("")
	defer r.memberMu.Unlock()
	voters, ids, want, ok = r.growCandidates()
	if !ok {
		return 0
	}
	still := make(map[peer.ID]bool, len(ids))
	for _, p := range ids {
		still[p] = true
	}
	ids = ids[:0]
	for _, c := range cands {
		if still[c.id] {
			ids = append(ids, c.id)
		}
	}
	k := oddStep(voters, want, len(ids))
	if k == 0 {
		return 0
	}
	done := r.promoteTogether(ids[:k], voters, want)
	for _, p := range done {
		r.log.Info("promoted a new member at once (voters from the start)", "peer", p, "voters", voters+len(done), "want", want)
	}
	return len(done)
}

// growCandidates reads, for growVoters, the configuration's voters, the
// non-voters that may get a vote from it (not a worker, not VoterNever, key
// not revoked: a revoked server is never promoted, as autopilot's never is)
// and the voters wanted. ok is false when this node does not lead, when the
// configuration cannot be read, and while a voter whose key is revoked is
// still in the configuration (its removal not done yet): that voter will
// never vote again, and each promotion then makes the quorum larger while
// it still counts in it. Three voters, one revoked, and a newcomer promoted:
// {A,B,C,D} needs A, B and D, so the promotion of a newcomer that has not
// caught up, or dies before it acknowledges, commits nothing, and no other
// configuration change (the revoked voter's removal either) can follow it:
// the leader steps down and nobody is elected until the newcomer answers.
// The count would also be off: the five voters growth makes are four once
// the revoked one has left. Growth waits until it has; autopilot's
// promoter, which promotes only a server that has been healthy for the
// stabilization time, moves the revoked voter's vote meanwhile.
func (r *Raft) growCandidates() (voters int, ids []peer.ID, want int, ok bool) {
	if r.raft.State() != raft.Leader {
		return 0, nil, 0, false
	}
	cfg, err := r.configuration()
	if err != nil {
		return 0, nil, 0, false
	}
	if s, revoked := r.revokedVoterBeside(""); revoked {
		r.log.Debug("growing voters waits: an evicted voter has not left the configuration yet", "voter", s)
		return 0, nil, 0, false
	}
	st := r.fsm.State()
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			continue
		}
		p, err := peer.Decode(string(s.ID))
		if err != nil || r.prefOf(p, st) == VoterNever {
			continue
		}
		if _, revoked := r.fsm.peerRole(p.String()); revoked {
			continue
		}
		ids = append(ids, p)
	}
	return voters, ids, r.desiredVoters(len(cfg.Servers)), true
}

// promoteTogether gives ids a vote as one step: raft changes one server
// at a time, so going from one voter to three passes through two, and this
// keeps that configuration as short-lived as raft allows. Every change is
// queued before the previous one commits (raft takes the next one in the
// leader loop's next turn after the commit, with no round of ours in
// between), the most caught-up candidate first, since it must acknowledge
// the first change. Should the count end even short of
// want (a later change failed while this node still leads), the failed
// promotions are retried at once, and if they fail again the last
// promotion is undone (a demotion commits under the new, smaller
// configuration: this leader alone for two voters to one), unless the rule
// of every change that takes a vote says it must wait (revokedVoterWaits).
// The caller holds memberMu, so no other membership change lands between
// these. It returns the peers that hold a vote through it.
func (r *Raft) promoteTogether(ids []peer.ID, voters, want int) []peer.ID {
	futs := make([]raft.IndexFuture, len(ids))
	for i, p := range ids {
		futs[i] = r.raft.AddVoter(raft.ServerID(p.String()), raft.ServerAddress(p.String()), 0, r.t.Apply)
	}
	var done, failed []peer.ID
	for i, f := range futs {
		if err := r.await(context.Background(), f); err != nil {
			r.log.Warn("growing voters: promotion failed", "peer", ids[i], "err", err)
			failed = append(failed, ids[i])
			continue
		}
		done = append(done, ids[i])
	}
	n := voters + len(done)
	if len(failed) == 0 || len(done) == 0 || n%2 == 1 || n >= want || r.raft.State() != raft.Leader {
		return done
	}
	for _, p := range failed {
		if err := r.await(context.Background(), r.raft.AddVoter(raft.ServerID(p.String()), raft.ServerAddress(p.String()), 0, r.t.Apply)); err != nil {
			r.log.Warn("growing voters: promotion failed again", "peer", p, "err", err)
			continue
		}
		done = append(done, p)
		if n++; n%2 == 1 {
			return done
		}
	}
	last := done[len(done)-1]
	if err := r.revokedVoterWaits(last, "the promotion is undone then"); err != nil {
		r.log.Error("growing voters: an even voter count is left", "voters", n, "peer", last, "err", err)
		return done
	}
	if err := r.await(context.Background(), r.raft.DemoteVoter(raft.ServerID(last.String()), 0, r.t.Apply)); err != nil {
		r.log.Error("growing voters: an even voter count is left", "voters", n, "peer", last, "err", err)
		return done
	}
	r.log.Warn("growing voters: undid a promotion rather than keep an even voter count", "peer", last, "voters", n-1)
	return done[:len(done)-1]
}

// NonvoterReasons says, for each non-voter of the configuration, why it
// holds no vote, from the replicated state alone (any node can answer):
// its role (a worker), its preference, a quarantine (Config.NoVote), a full
// set of voters, the even step, or a promotion still to come. The caller
// may know better (a node on battery).
func (r *Raft) NonvoterReasons() map[peer.ID]string {
	cfg, err := r.configuration()
	if err != nil {
		return nil
	}
	st := r.fsm.State()
	noVote := func(p peer.ID) bool { return r.cfg.NoVote != nil && r.cfg.NoVote(p.String()) }
	voters, eligible := 0, 0
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		} else if p, err := peer.Decode(string(s.ID)); err == nil && r.prefOf(p, st) != VoterNever && !noVote(p) {
			eligible++ // as the promoter counts them
		}
	}
	want := r.desiredVoters(len(cfg.Servers))
	out := map[peer.ID]string{}
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			continue
		}
		p, err := peer.Decode(string(s.ID))
		if err != nil {
			continue
		}
		switch {
		case st.Members[p.String()].Role == RoleWorker:
			out[p] = "a worker never holds a vote"
		case r.prefOf(p, st) == VoterNever:
			out[p] = "its voter preference is never"
		case noVote(p):
			out[p] = "quarantined by the audits: no vote until hydra trust reset"
		case voters >= want:
			out[p] = fmt.Sprintf("the cluster keeps %d voters and has them", want)
		case oddStep(voters, want, eligible) == 0:
			grow := "voters become"
			if voters == 1 {
				grow = "voter becomes"
			}
			out[p] = fmt.Sprintf("waiting for another eligible node: %d %s %d, never an even count", voters, grow, voters+2)
		default:
			out[p] = "to be promoted once it answers the leader and has caught up"
		}
	}
	return out
}
