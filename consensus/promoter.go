package consensus

import (
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// nodeTypeNever is the autopilot NodeType of VoterNever servers.
const nodeTypeNever autopilot.NodeType = "never"

func nodeType(p VoterPref) autopilot.NodeType {
	if p == VoterNever {
		return nodeTypeNever
	}
	return autopilot.NodeVoter
}

// RarelyPaused is the paused share below which the promoter counts a node
// as rarely paused (see Promoter).
const RarelyPaused = 0.2

// availOf reads the Availability the delegate put into s.Meta; known is
// false until the server has answered a stats call in this leadership.
func availOf(s *autopilot.Server) (a Availability, known bool) {
	a.OnBattery = s.Meta[metaBattery] == "1"
	if p, err := strconv.ParseFloat(s.Meta[metaPaused], 64); err == nil && p >= 0 && p <= 1 {
		a.Paused = p
	}
	return a, s.Meta[metaAvail] == "1"
}

func prefOf(s *autopilot.Server) VoterPref {
	p, _ := ParseVoterPref(s.Meta[metaVoter])
	return p
}

// Promoter is Hydra's autopilot promoter. autopilot's StablePromoter makes
// every stable server a voter and never demotes; Hydra wants a fixed, small
// number of voters (3, or 5 in larger clusters) and everybody else a
// non-voter that still replicates. Each round it computes the wanted voter
// set and returns the difference:
//
//   - candidates are voter-eligible servers (VoterPref ≠ never) that are
//     either voters not failed (unreachable beyond DeadVoterGrace — a blip
//     does not cost a vote) or healthy non-voters stable for the autopilot
//     stabilization time;
//   - a VoterAuto candidate that runs from its battery (Availability) is
//     unfit: it may sleep or die at any moment, so it only fills the set
//     when there are not enough fit candidates;
//   - fit candidates are ranked: the leader, then VoterPrefer nodes, then
//     current voters (no churn among equals), then rarely paused ones (the
//     owner policy held compute back less than RarelyPaused of the recent
//     time: their owners are less likely to close or suspend them), then
//     the longest stable, then by ID;
//   - the first desired(n) are wanted. If there are fewer, unfit ones, then
//     failed voters, then VoterNever voters, then voters whose key is
//     revoked (evicted, their removal not done yet: failed from the
//     eviction on, KnownServers) are kept rather than demoted: a vote is
//     only moved to a healthy replacement, and a revoked voter's goes
//     first, never a good one's in its favour;
//   - short of the target, the count never grows to an even number (one
//     voter becomes three, never two: see voters.go).
//
// Until every live voter has answered a stats call in this leadership (so
// its Availability is known), the promoter changes nothing, and a
// non-voter that has not answered is no candidate.
//
// Voters not wanted are demoted (autopilot demotes a failed one first, then
// promotes, so the count never dips by more than one). A leader that is not
// wanted (a VoterNever node that bootstrapped, or a laptop just unplugged)
// hands leadership to a wanted voter first; the new leader then demotes it.
type Promoter struct {
	desired func(servers int) int
	now     func() time.Time
	noVote  func(id string) bool // servers that may not vote (Config.NoVote)
}

var _ autopilot.Promoter = (*Promoter)(nil)

// GetServerExt is unused: Hydra keeps nothing extra per server.
func (p *Promoter) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }

// GetStateExt is unused: Hydra keeps nothing extra per state.
func (p *Promoter) GetStateExt(*autopilot.Config, *autopilot.State) any { return nil }

// GetNodeTypes classes servers as voter-eligible or "never".
func (p *Promoter) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	out := make(map[raft.ServerID]autopilot.NodeType, len(s.Servers))
	for id, srv := range s.Servers {
		out[id] = nodeType(prefOf(&srv.Server))
	}
	return out
}

// IsPotentialVoter is true for eligible servers.
func (p *Promoter) IsPotentialVoter(t autopilot.NodeType) bool { return t == autopilot.NodeVoter }

// FilterFailedServerRemovals keeps failed voters: the promoter moves their
// vote to a healthy non-voter instead (and keeps it when there is none, so a
// voter that comes back needs no rejoin). Failed non-voters are removed once
// their (long) grace has passed.
func (p *Promoter) FilterFailedServerRemovals(_ *autopilot.Config, _ *autopilot.State, f *autopilot.FailedServers) *autopilot.FailedServers {
	out := *f
	out.FailedVoters = nil
	out.StaleVoters = nil
	return &out
}

// CalculatePromotionsAndDemotions returns the changes towards the wanted
// voter set (see Promoter).
func (p *Promoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	now := time.Now()
	if p.now != nil {
		now = p.now()
	}
	want := 3
	if p.desired != nil {
		want = p.desired(len(s.Servers))
	}
	// The configured stabilization always, also in an instance's first
	// rounds (autopilot waives it then): the leader switches between two
	// instances (pace.go), and a server that joined a moment ago must not
	// get a vote because the brisk one has just started.
	stable := c.ServerStabilizationTime

	type cand struct {
		id     raft.ServerID
		pref   VoterPref
		voter  bool
		leader bool
		rarely bool // rarely paused
		since  time.Time
	}
	var cands, unfit, failedVoters, neverVoters, revokedVoters []cand
	for id, srv := range s.Servers {
		a, known := availOf(&srv.Server)
		if !known && srv.Server.NodeStatus != autopilot.NodeFailed {
			if srv.HasVotingRights() {
				// A new leader's first round, before this voter answered:
				// it may be on battery, and ranking it fit now would
				// demote another voter only to promote it back later.
				return autopilot.RaftChanges{}
			}
			continue // not a candidate until it has answered
		}
		c := cand{id: id, pref: prefOf(&srv.Server), voter: srv.HasVotingRights(),
			leader: srv.State == autopilot.RaftLeader || id == s.Leader, since: srv.Health.StableSince,
			rarely: a.Paused < RarelyPaused}
		eligible := c.voter || (srv.State == autopilot.RaftNonVoter && srv.Health.IsStable(now, stable))
		switch {
		case srv.Server.Meta[metaRevoked] == "1":
			if c.voter {
				revokedVoters = append(revokedVoters, c)
			}
		case c.pref == VoterNever || (p.noVote != nil && p.noVote(string(id))):
			if c.voter {
				neverVoters = append(neverVoters, c)
			}
		case c.voter && srv.Server.NodeStatus == autopilot.NodeFailed:
			failedVoters = append(failedVoters, c)
		case !eligible:
		case a.OnBattery && c.pref == VoterAuto:
			unfit = append(unfit, c)
		default:
			cands = append(cands, c)
		}
	}
	less := func(a, b cand) bool {
		if a.leader != b.leader {
			return a.leader
		}
		if (a.pref == VoterPrefer) != (b.pref == VoterPrefer) {
			return a.pref == VoterPrefer
		}
		if a.voter != b.voter {
			return a.voter
		}
		if a.rarely != b.rarely {
			return a.rarely
		}
		if !a.since.Equal(b.since) {
			return a.since.Before(b.since)
		}
		return a.id < b.id
	}
	sortCands := func(cs []cand) { sort.Slice(cs, func(i, j int) bool { return less(cs[i], cs[j]) }) }
	sortCands(cands)
	sortCands(unfit)
	sortCands(failedVoters)
	sortCands(neverVoters)
	sortCands(revokedVoters)
	wanted := cands
	if len(wanted) > want {
		wanted = wanted[:want]
	}
	for _, fill := range [][]cand{unfit, failedVoters, neverVoters, revokedVoters} {
		for _, c := range fill {
			if len(wanted) >= want {
				break
			}
			wanted = append(wanted, c)
		}
	}
	// Never grow to an even count short of the target: a second (or fourth)
	// voter adds no fault tolerance and one more server that must be up.
	if n := len(wanted); n < want && n%2 == 0 {
		for i := n - 1; i >= 0; i-- {
			if !wanted[i].voter {
				wanted = append(wanted[:i:i], wanted[i+1:]...)
				break
			}
		}
	}
	// The current leader with no vote to spare: keep it whatever, unless a
	// wanted voter can take over (then transfer first).
	in := map[raft.ServerID]bool{}
	for _, c := range wanted {
		in[c.id] = true
	}
	var ch autopilot.RaftChanges
	for _, c := range wanted {
		if !c.voter {
			ch.Promotions = append(ch.Promotions, c.id)
		}
	}
	for id, srv := range s.Servers {
		if !srv.HasVotingRights() || in[id] {
			continue
		}
		if id == s.Leader || srv.State == autopilot.RaftLeader {
			for _, c := range wanted {
				if c.voter && c.id != id && s.Servers[c.id].Health.Healthy {
					ch.Leader = c.id
					break
				}
			}
			continue
		}
		ch.Demotions = append(ch.Demotions, id)
	}
	sort.Slice(ch.Promotions, func(i, j int) bool { return ch.Promotions[i] < ch.Promotions[j] })
	sort.Slice(ch.Demotions, func(i, j int) bool { return ch.Demotions[i] < ch.Demotions[j] })
	return ch
}
