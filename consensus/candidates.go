package consensus

// The fresh node's decision to found a cluster (package doc, "Bootstrap
// without configuration"): which peers count as candidates, how long to wait
// for them, and which ones stop counting because they never found one.

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// mayFound reports whether this node may found a cluster at all: a node
// with a join token never does (the token is for a cluster that exists:
// it waits for one of its members), and a node given --join peers only once
// one of them has answered (so that a node started before its hub waits
// for it rather than founding a cluster alone).
func (r *Raft) mayFound(peers map[peer.ID]bootPeer, now time.Time) bool {
	if r.joinTok != nil {
		if !r.tokenWait.Swap(true) {
			r.log.Info("waiting for a member of the cluster this join token is for", "cluster", r.joinTok.ClusterFP)
		}
		return false
	}
	if len(r.cfg.JoinPeers) == 0 {
		return true
	}
	for _, p := range r.cfg.JoinPeers {
		if bp, ok := peers[p]; ok && bp.answered && now.Sub(bp.lastOK) < r.t.PeerDrop {
			return true
		}
	}
	return false
}

// joins reports whether this node was started to join others (--join
// peers or a join token): infoResponse.Joins.
func (r *Raft) joins() bool { return len(r.cfg.JoinPeers) > 0 || r.joinTok != nil }

// joinFlags returns, for every peer in peers and every candidate their
// answers list, whether it joins (infoResponse.Joins, or listed in an
// answer's Joining). A candidate counts as joining only when every source
// that names it says so, and a peer that never answered counts as not
// joining: either only puts a candidate earlier in founderLess order,
// which makes the others wait for it, never found beside it.
func joinFlags(peers map[peer.ID]bootPeer) map[peer.ID]bool {
	out := make(map[peer.ID]bool, len(peers))
	set := func(p peer.ID, joins bool) {
		if old, ok := out[p]; ok {
			joins = joins && old
		}
		out[p] = joins
	}
	for p, bp := range peers {
		set(p, bp.answered && bp.info.Joins)
		if len(bp.info.Candidates) == 0 {
			continue
		}
		joining := make(map[string]bool, len(bp.info.Joining))
		for _, c := range bp.info.Joining {
			joining[c] = true
		}
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil {
				set(id, joining[c])
			}
		}
	}
	return out
}

// founderLess orders founder candidates: those not started to join others
// (no --join, no join token) before those that were, then by peer ID. The
// first one founds. A pure function of what every candidate says about
// itself, so all candidates that see the same set agree on it; when every
// candidate joins (each was given the others with --join) it is the
// lowest peer ID, as it always was.
func founderLess(aJoins bool, a peer.ID, bJoins bool, b peer.ID) bool {
	if aJoins != bJoins {
		return !aJoins
	}
	return a < b
}

// shouldBootstrap applies the deterministic rule: among this node and the
// live, unclustered peers of our cluster name, only voter-eligible ones
// count (VoterNever nodes only when nobody is eligible), and the first in
// founderLess order wins: the lowest peer ID among those not given --join,
// or among all when every one was. selfJoins is this node's own
// infoResponse.Joins. A peer that never answered still counts (as not
// joining) until it drops out, so a slow peer is waited for rather than
// raced.
func shouldBootstrap(self peer.ID, selfPref VoterPref, selfJoins bool, peers map[peer.ID]bootPeer) bool {
	eligible := func(pref VoterPref) bool { return pref != VoterNever }
	joins := joinFlags(peers)
	before := func(p peer.ID) bool { return founderLess(joins[p], p, selfJoins, self) }
	anyEligible := eligible(selfPref)
	for _, bp := range peers {
		if !bp.answered || eligible(bp.info.Voter) {
			anyEligible = true
		}
	}
	if anyEligible && !eligible(selfPref) {
		return false
	}
	for p, bp := range peers {
		if bp.answered && bp.info.InCluster {
			return false
		}
		counts := !bp.answered || eligible(bp.info.Voter) || !anyEligible
		if counts && before(p) {
			return false
		}
		// Candidates our peers see that we may not: an earlier one wins.
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil && id != self && before(id) {
				return false
			}
		}
	}
	return true
}

// stuckAfter is how long the lowest candidate may stay unclustered, once no
// new candidate has appeared, before it stops counting: an honest lowest
// candidate founds the cluster one discovery window after the last
// candidate appeared, so one that never does (a stranger announcing a fake
// low peer ID, or a low ID in a candidate list) must not keep a fresh LAN
// from ever forming a cluster. The next candidate up waits one more
// stuckAfter (candidateView), so that they do not all give up at once.
func (r *Raft) stuckAfter() time.Duration { return 3*r.t.Discovery + r.t.PeerDrop }

// maxStuckRank bounds how many stuckAfter periods the highest candidates
// wait for candidates only reported by others: made-up low candidates delay
// a fresh cluster by at most this many (and one more); a peer that answers
// itself counts one period more than every candidate before it (candidateView).
const maxStuckRank = 8

// candidateView returns peers without the candidates, direct or reported,
// that are stuck, and quiet: when the newest candidate this node knows of
// was first seen (the decision waits a discovery window after it). The
// candidates are ranked in founderLess order; the one of rank k is stuck once it has
// stayed unclustered for (level+1)·stuckAfter since max(its first sighting,
// quiet), where its level is min(k, maxStuckRank) for a candidate only
// reported by others, and one more than the highest level before it for one
// that answers this node itself: a node that would found once the candidates
// before it are given up is given up one period after them, never at the
// same instant, however many made-up candidates a stranger reports before
// it. A candidate still starting (infoResponse.Starting) keeps quiet at
// now, for at most stuckAfter after it was first seen. Only the first
// 4·maxCandidates distinct candidates are remembered; later ones count only
// if they answer this node themselves: a stranger's made-up lists must not
// hide a node started a moment later, which would then found beside this one.
func (r *Raft) candidateView(peers map[peer.ID]bootPeer, now time.Time) (map[peer.ID]bootPeer, time.Time) {
	r.boot.mu.Lock()
	defer r.boot.mu.Unlock()
	var quiet time.Time
	first := map[peer.ID]time.Time{}
	note := func(p peer.ID, seen time.Time, direct bool) {
		if p == r.id {
			return
		}
		t, ok := r.boot.cand[p]
		if !ok {
			if len(r.boot.cand) >= 4*maxCandidates && !direct {
				return // too many distinct candidates: only known ones and those that answer count
			}
			t = seen
			r.boot.cand[p] = t
		}
		first[p] = t
		if t.After(quiet) {
			quiet = t
		}
	}
	for p, bp := range peers {
		switch {
		case !bp.answered:
			if bp.firstSeen.After(quiet) { // may be anything: wait for its answer
				quiet = bp.firstSeen
			}
		case !bp.info.InCluster:
			note(p, now, true)
			if bp.info.Starting && now.Sub(bp.firstSeen) < r.stuckAfter() && now.After(quiet) {
				quiet = now // its lists are not complete yet: wait for them
			}
		}
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil {
				note(id, now, false)
			}
		}
	}
	if len(r.boot.cand) > 4*maxCandidates {
		// Over the bound only by candidates that answer (at most maxBootPeers): forget the
		// ones nobody names any more.
		for p := range r.boot.cand {
			if _, ok := first[p]; !ok {
				delete(r.boot.cand, p)
			}
		}
	}
	ranked := make([]peer.ID, 0, len(first))
	for p := range first {
		ranked = append(ranked, p)
	}
	joins := joinFlags(peers)
	slices.SortFunc(ranked, func(a, b peer.ID) int {
		switch {
		case founderLess(joins[a], a, joins[b], b):
			return -1
		case founderLess(joins[b], b, joins[a], a):
			return 1
		}
		return 0
	})
	stuck := map[peer.ID]bool{}
	top := -1 // the highest level of the candidates ranked so far
	for k, p := range ranked {
		level := min(k, maxStuckRank)
		if bp, ok := peers[p]; ok && bp.answered && !bp.info.InCluster {
			// One that answers this node itself may be a node that founds as soon as the ones
			// before it are given up: given up itself one period after the last of them, never
			// with it (the cap would have two such nodes, past maxStuckRank made-up ones, give
			// up everything before them at the same instant and found two clusters).
			level = max(level, top+1)
		}
		top = max(top, level)
		since := first[p]
		if quiet.After(since) {
			since = quiet
		}
		if now.Sub(since) > time.Duration(level+1)*r.stuckAfter() {
			stuck[p] = true
		}
	}
	counts := func(p peer.ID) bool {
		_, known := first[p]
		return known && !stuck[p]
	}
	out := make(map[peer.ID]bootPeer, len(peers))
	for p, bp := range peers {
		if bp.answered && !bp.info.InCluster && !counts(p) {
			continue
		}
		var keep []string
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil && counts(id) {
				keep = append(keep, c)
			}
		}
		bp.info.Candidates = keep
		out[p] = bp
	}
	return out, quiet
}
