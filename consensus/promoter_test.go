package consensus

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// srv builds one server of a synthetic autopilot state. kind: "L" leader,
// "V" voter, "N" non-voter; status failed marks an unreachable node.
func srv(id, kind string, pref VoterPref, healthy, failed bool, stableFor time.Duration, now time.Time) *autopilot.ServerState {
	st := map[string]autopilot.RaftState{"L": autopilot.RaftLeader, "V": autopilot.RaftVoter, "N": autopilot.RaftNonVoter}[kind]
	status := autopilot.NodeAlive
	if failed {
		status = autopilot.NodeFailed
	}
	return &autopilot.ServerState{
		Server: autopilot.Server{ID: raft.ServerID(id), NodeStatus: status, Meta: map[string]string{metaVoter: pref.String(), metaAvail: "1"}},
		State:  st,
		Health: autopilot.ServerHealth{Healthy: healthy, StableSince: now.Add(-stableFor)},
	}
}

// battery marks a server as running from its battery, as the delegate does
// from its stats answer.
func battery(s *autopilot.ServerState) *autopilot.ServerState {
	s.Server.Meta[metaBattery] = "1"
	return s
}

// unanswered marks a server that has not answered a stats call yet.
func unanswered(s *autopilot.ServerState) *autopilot.ServerState {
	delete(s.Server.Meta, metaAvail)
	return s
}

// pausedShare sets the paused share a server reported.
func pausedShare(s *autopilot.ServerState, p string) *autopilot.ServerState {
	s.Server.Meta[metaPaused] = p
	return s
}

func ids(xs []raft.ServerID) string { s := fmt.Sprint(xs); return s }

func Test_Promoter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	conf := &autopilot.Config{ServerStabilizationTime: 10 * time.Second}
	long, short := time.Hour, time.Second
	cases := []struct {
		name            string
		servers         []*autopilot.ServerState
		want            int
		promote, demote string
		leader          raft.ServerID
	}{
		{"stable voters stay, no churn", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, short, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[]", "[]", ""},
		{"failed voter replaced by a stable non-voter", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, false, true, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[d]", "[c]", ""},
		{"unhealthy voter within grace keeps its vote", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, false, false, short, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[]", "[]", ""},
		{"failed voter kept without a replacement", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, false, true, long, now), srv("d", "N", VoterAuto, true, false, short, now),
		}, 3, "[]", "[]", ""},
		{"never is not promoted", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "N", VoterNever, true, false, long, now),
			srv("c", "N", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[c d]", "[]", ""},
		{"prefer takes a vote from an auto voter", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, 2*long, now), srv("p", "N", VoterPrefer, true, false, long, now),
		}, 3, "[p]", "[b]", ""},
		{"excess voters demoted, leader kept", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, short, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "V", VoterAuto, true, false, short, now),
		}, 3, "[]", "[d]", ""},
		{"never leader hands over once voters exist", []*autopilot.ServerState{
			srv("n", "L", VoterNever, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "V", VoterAuto, true, false, long, now),
		}, 3, "[]", "[]", "b"},
		{"five voters wanted", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
			srv("e", "N", VoterAuto, true, false, long, now), srv("f", "N", VoterAuto, true, false, long, now),
			srv("g", "N", VoterAuto, true, false, 2*long, now),
		}, 5, "[d g]", "[]", ""},
		{"a voter on battery gives its vote to a mains node", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("b", "V", VoterAuto, true, false, long, now)),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[d]", "[b]", ""},
		{"a leader on battery hands over leadership first", []*autopilot.ServerState{
			battery(srv("a", "L", VoterAuto, true, false, long, now)), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "V", VoterAuto, true, false, short, now),
		}, 3, "[]", "[]", "b"},
		{"a voter on battery keeps its vote without a replacement", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("b", "V", VoterAuto, true, false, long, now)),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, short, now),
		}, 3, "[]", "[]", ""},
		{"a non-voter on battery is not promoted over a mains one", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("b", "N", VoterAuto, true, false, 2*long, now)),
			srv("c", "N", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[c d]", "[]", ""},
		{"on battery still fills an empty seat", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("b", "N", VoterAuto, true, false, long, now)),
			srv("c", "N", VoterAuto, true, false, long, now),
		}, 3, "[b c]", "[]", ""},
		{"one voter never becomes two", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "N", VoterAuto, true, false, long, now),
		}, 3, "[]", "[]", ""},
		{"three voters become five, not four", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
			srv("e", "N", VoterAuto, true, false, short, now),
		}, 5, "[]", "[]", ""},
		{"prefer keeps its vote on battery", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("p", "V", VoterPrefer, true, false, long, now)),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[]", "[]", ""},
		{"a rarely paused non-voter is promoted first", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			pausedShare(srv("c", "N", VoterAuto, true, false, 2*long, now), "0.600"),
			pausedShare(srv("d", "N", VoterAuto, true, false, long, now), "0.050"),
		}, 3, "[d]", "[]", ""},
		{"a often paused voter keeps its vote (no churn)", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			pausedShare(srv("c", "V", VoterAuto, true, false, long, now), "0.900"),
			pausedShare(srv("d", "N", VoterAuto, true, false, 2*long, now), "0.000"),
		}, 3, "[]", "[]", ""},
		{"nothing changes until every voter has answered", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			unanswered(srv("c", "V", VoterAuto, true, false, long, now)), srv("d", "V", VoterAuto, true, false, short, now),
		}, 3, "[]", "[]", ""},
		{"a failed voter that never answered is still replaced", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			unanswered(srv("c", "V", VoterAuto, false, true, long, now)), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[d]", "[c]", ""},
		{"a non-voter that has not answered is not promoted", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			unanswered(srv("c", "N", VoterAuto, true, false, 2*long, now)), srv("d", "N", VoterAuto, true, false, long, now),
		}, 3, "[d]", "[]", ""},
		{"a bad paused share reads as zero", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			pausedShare(srv("c", "N", VoterAuto, true, false, 2*long, now), "NaN"),
			pausedShare(srv("d", "N", VoterAuto, true, false, long, now), "7"),
		}, 3, "[c]", "[]", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
			for _, x := range tc.servers {
				s.Servers[x.Server.ID] = x
				if x.State == autopilot.RaftLeader {
					s.Leader = x.Server.ID
				}
			}
			p := &Promoter{desired: func(int) int { return tc.want }, now: func() time.Time { return now }}
			// ServerStabilizationTime only applies once autopilot has run
			// that long; the zero firstStateTime is long ago.
			ch := p.CalculatePromotionsAndDemotions(conf, s)
			slices.Sort(ch.Promotions)
			if ids(ch.Promotions) != tc.promote || ids(ch.Demotions) != tc.demote || ch.Leader != tc.leader {
				t.Fatalf("got promote %v demote %v leader %q; want %s %s %q",
					ch.Promotions, ch.Demotions, ch.Leader, tc.promote, tc.demote, tc.leader)
			}
		})
	}
}

func Test_VoterPref(t *testing.T) {
	for _, s := range []string{"auto", "prefer", "never"} {
		p, err := ParseVoterPref(s)
		if err != nil || p.String() != s {
			t.Fatalf("%s: %v %v", s, p, err)
		}
	}
	if _, err := ParseVoterPref("always"); err == nil {
		t.Fatal("accepted a bad preference")
	}
}

func Test_ShouldBootstrap(t *testing.T) {
	a, b, c := "12D3KooA", "12D3KooB", "12D3KooC"
	ans := func(pref VoterPref, in bool) bootPeer {
		return bootPeer{answered: true, info: infoResponse{Voter: pref, InCluster: in}}
	}
	type peers = map[string]bootPeer
	cases := []struct {
		name string
		self string
		pref VoterPref
		ps   peers
		want bool
	}{
		{"alone", a, VoterAuto, peers{}, true},
		{"lowest", a, VoterAuto, peers{b: ans(VoterAuto, false), c: ans(VoterAuto, false)}, true},
		{"not lowest", b, VoterAuto, peers{a: ans(VoterAuto, false)}, false},
		{"lower peer never", b, VoterAuto, peers{a: ans(VoterNever, false)}, true},
		{"self never, eligible peer", a, VoterNever, peers{b: ans(VoterAuto, false)}, false},
		{"all never: lowest", a, VoterNever, peers{b: ans(VoterNever, false)}, true},
		{"silent lower peer waited for", b, VoterAuto, peers{a: {}}, false},
		{"a peer is in a cluster", a, VoterAuto, peers{b: ans(VoterAuto, true)}, false},
	}
	for _, tc := range cases {
		m := map[peer.ID]bootPeer{}
		for k, v := range tc.ps {
			m[peer.ID(k)] = v
		}
		if got := shouldBootstrap(peer.ID(tc.self), tc.pref, false, m); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

// With --join in a star, two leaves that only know the hub must not both
// bootstrap: the hub's answer names the other leaf as a candidate.
func Test_ShouldBootstrapSecondHandCandidate(t *testing.T) {
	var ids []peer.ID
	for range 3 {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	low, mid, hub := ids[0], ids[1], ids[2]
	// mid knows only the hub, which reports low as a candidate.
	hubSays := bootPeer{answered: true, info: infoResponse{Candidates: []string{low.String(), mid.String()}}}
	if shouldBootstrap(mid, VoterAuto, false, map[peer.ID]bootPeer{hub: hubSays}) {
		t.Fatal("mid bootstrapped although the hub knows a lower candidate")
	}
	hubSays.info.Candidates = []string{mid.String(), low.String()}
	if !shouldBootstrap(low, VoterAuto, false, map[peer.ID]bootPeer{hub: hubSays}) {
		t.Fatal("the lowest candidate did not bootstrap")
	}
	hubSays.info.Candidates = []string{"not-a-peer-id"}
	if !shouldBootstrap(low, VoterAuto, false, map[peer.ID]bootPeer{hub: hubSays}) {
		t.Fatal("a malformed candidate blocked bootstrap")
	}
}

// An Availability from the network with values out of range is ignored
// (the node counts as fit), and a valid one is kept.
func Test_NoteAvailValidates(t *testing.T) {
	d := &delegate{avail: map[raft.ServerID]Availability{}}
	for _, bad := range []Availability{{Paused: -0.1}, {Paused: 1.5}, {OnBattery: true, Paused: math.NaN()}} {
		d.noteAvail("x", &bad)
		if a := d.avail["x"]; a != (Availability{}) {
			t.Fatalf("kept %+v as %+v", bad, a)
		}
	}
	d.noteAvail("x", &Availability{OnBattery: true, Paused: 0.5})
	if a := d.avail["x"]; !a.OnBattery || a.Paused != 0.5 {
		t.Fatalf("got %+v", a)
	}
	d.noteAvail("x", nil)
	if a, ok := d.avail["x"]; !ok || a != (Availability{}) {
		t.Fatalf("an answer without availability: %+v %v, want a fit node", a, ok)
	}
}

// Test_PromoterNoVote: a server named by NoVote (quarantined by the audits)
// loses its vote to a stable non-voter and is never promoted.
func Test_PromoterNoVote(t *testing.T) {
	now := time.Now()
	long := 10 * time.Minute
	s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
	for _, x := range []*autopilot.ServerState{
		srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
		srv("q", "V", VoterAuto, true, false, long, now), srv("d", "N", VoterAuto, true, false, long, now),
		srv("r", "N", VoterPrefer, true, false, long, now),
	} {
		s.Servers[x.Server.ID] = x
		if x.State == autopilot.RaftLeader {
			s.Leader = x.Server.ID
		}
	}
	p := &Promoter{desired: func(int) int { return 3 }, now: func() time.Time { return now },
		noVote: func(id string) bool { return id == "q" || id == "r" }}
	ch := p.CalculatePromotionsAndDemotions(&autopilot.Config{}, s)
	if ids(ch.Promotions) != "[d]" || ids(ch.Demotions) != "[q]" {
		t.Fatalf("promote %v demote %v; want [d] [q]", ch.Promotions, ch.Demotions)
	}
}

// Only a change of what the promoter weighs (battery, rarely paused) is news for the leader:
// the paused share drifting below or above RarelyPaused is, drifting within a side is not.
func Test_SameFitness(t *testing.T) {
	base := Availability{Paused: 0.01}
	for _, c := range []struct {
		b    Availability
		same bool
	}{
		{Availability{Paused: 0.05}, true},
		{Availability{Paused: RarelyPaused + 0.01}, false},
		{Availability{OnBattery: true, Paused: 0.01}, false},
		{Availability{}, true},
	} {
		if got := base.SameFitness(c.b); got != c.same {
			t.Errorf("%+v vs %+v: same %v, want %v", base, c.b, got, c.same)
		}
	}
}

// revokedSrv marks a server whose key is revoked, as KnownServers does: failed from the eviction on.
func revokedSrv(s *autopilot.ServerState) *autopilot.ServerState {
	s.Server.Meta[metaRevoked] = "1"
	s.Server.NodeStatus = autopilot.NodeFailed
	s.Health.Healthy = false
	return s
}

// Test_PromoterRevoked: a voter whose key is revoked is kept only when nothing else may vote,
// after failed, unfit and VoterNever voters: its vote is the one that moves, never a good
// voter's in its favour; a revoked non-voter is never promoted.
func Test_PromoterRevoked(t *testing.T) {
	now := time.Now()
	long := 10 * time.Minute
	cases := []struct {
		name            string
		servers         []*autopilot.ServerState
		promote, demote string
	}{
		{"quarantined voter beside a revoked one", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, false, false, long, now),
			revokedSrv(srv("c", "V", VoterAuto, true, false, long, now)), srv("d", "N", VoterAuto, true, false, long, now),
		}, "[d]", "[c]"},
		{"failed voter beside a revoked one", []*autopilot.ServerState{ // x ranks after c by ID
			srv("a", "L", VoterAuto, true, false, long, now), srv("x", "V", VoterAuto, false, true, long, now),
			revokedSrv(srv("c", "V", VoterAuto, true, false, long, now)), srv("d", "N", VoterAuto, true, false, long, now),
		}, "[d]", "[c]"},
		{"unfit voter beside a revoked one", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), battery(srv("b", "V", VoterAuto, true, false, long, now)),
			revokedSrv(srv("c", "V", VoterAuto, true, false, long, now)), srv("d", "N", VoterAuto, true, false, long, now),
		}, "[d]", "[c]"},
		{"nothing else may vote", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			revokedSrv(srv("c", "V", VoterAuto, true, false, long, now)),
		}, "[]", "[]"},
		{"revoked non-voter", []*autopilot.ServerState{
			srv("a", "L", VoterAuto, true, false, long, now), srv("b", "V", VoterAuto, true, false, long, now),
			srv("c", "V", VoterAuto, true, false, long, now), srv("d", "V", VoterAuto, true, false, long, now),
			srv("e", "V", VoterAuto, true, false, long, now), revokedSrv(srv("n", "N", VoterPrefer, true, false, long, now)),
		}, "[]", "[]"},
	}
	for _, tc := range cases {
		s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
		for _, x := range tc.servers {
			s.Servers[x.Server.ID] = x
			if x.State == autopilot.RaftLeader {
				s.Leader = x.Server.ID
			}
		}
		p := &Promoter{desired: func(n int) int { return map[bool]int{true: 5, false: 3}[n >= 6] }, now: func() time.Time { return now },
			noVote: func(id string) bool { return tc.name == "quarantined voter beside a revoked one" && id == "b" }}
		ch := p.CalculatePromotionsAndDemotions(&autopilot.Config{}, s)
		if ids(ch.Promotions) != tc.promote || ids(ch.Demotions) != tc.demote {
			t.Errorf("%s: promote %v demote %v; want %s %s", tc.name, ch.Promotions, ch.Demotions, tc.promote, tc.demote)
		}
	}
}
