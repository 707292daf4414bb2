package consensus

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// newTestNodeBelow is newTestNode with a key whose peer ID sorts below
// limit: keys are generated until one does.
func newTestNodeBelow(t *testing.T, name, cluster string, limit peer.ID, mod func(*Config)) *testNode {
	t.Helper()
	n := newTestNode(t, name, cluster, mod)
	for n.h.ID() >= limit {
		n.kill()
		n.key = newKey(t)
		n.dir = filepath.Join(t.TempDir(), "raft")
		n.open()
	}
	return n
}

// The README's several-nodes-on-one-machine recipe: the first node has no
// --join and --admit lan, two more started within its discovery window
// --join it with the default --admit approval, and their peer IDs are lower
// than the first's. The first node founds the cluster (its admission mode
// is the cluster's) and the joiners are admitted by it without approval;
// before, the lowest joiner founded a cluster that needs approval, and the
// first node waited for it. Round 0: the joiners know only the first node
// (they meet through its answers); round 1: everyone sees everyone, as
// mDNS on one machine does.
func TestFounderIsTheNodeTheOthersJoin(t *testing.T) {
	t.Parallel()
	for round := range 2 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			first := newTestNode(t, "first", "founder", func(c *Config) { c.Admit = AdmitLAN })
			joiner := func(name string) *testNode {
				return newTestNodeBelow(t, name, "founder", first.h.ID(), func(c *Config) {
					c.Admit = AdmitApproval
					c.JoinPeers = []peer.ID{first.h.ID()}
				})
			}
			nodes := []*testNode{first, joiner("j1"), joiner("j2")}
			if round == 0 {
				for _, j := range nodes[1:] {
					j.h.Peerstore().AddAddrs(first.h.ID(), first.h.Addrs(), peerstore.PermanentAddrTTL)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := j.h.Connect(ctx, peer.AddrInfo{ID: first.h.ID(), Addrs: first.h.Addrs()})
					cancel()
					if err != nil {
						t.Fatal(err)
					}
					j.r.PeerFound(first.h.ID())
					first.r.PeerFound(j.h.ID())
				}
			} else {
				connectAll(t, nodes)
			}
			first.run()
			for _, j := range nodes[1:] {
				j.run()
			}
			waitUntil(t, testDeadline, "a cluster founded", func() error {
				for _, n := range nodes {
					if n.r.inCluster() {
						return nil
					}
				}
				return fmt.Errorf("no node is in a cluster yet")
			})
			for _, j := range nodes[1:] {
				if j.r.inCluster() && !first.r.inCluster() {
					t.Fatalf("joiner %s founded the cluster, not the node it was told to join", j.name)
				}
			}
			leader := waitAgreed(t, nodes)
			if got := leader.r.State().AdmitMode(); got != AdmitLAN {
				t.Fatalf("cluster admission mode %q, want the first node's %q", got, AdmitLAN)
			}
		})
	}
}

// The founder is the lowest candidate not given --join, the lowest of all
// when every one was; a candidate known only from another's answer is
// ordered by that answer's Joining, and one any source says does not join
// (or an older build that never says) counts as not joining.
func Test_ShouldBootstrapPrefersNodesNotJoining(t *testing.T) {
	ids := sortedIDs(t, 3)
	low, mid, high := ids[0], ids[1], ids[2]
	ans := func(joins bool) bootPeer {
		return bootPeer{answered: true, info: infoResponse{Voter: VoterAuto, Joins: joins}}
	}
	cases := []struct {
		name      string
		self      peer.ID
		selfJoins bool
		peers     map[peer.ID]bootPeer
		want      bool
	}{
		{"highest, not joining, the others join", high, false, map[peer.ID]bootPeer{low: ans(true), mid: ans(true)}, true},
		{"lowest joiner, a node not joining", low, true, map[peer.ID]bootPeer{high: ans(false), mid: ans(true)}, false},
		{"everyone joins: the lowest", low, true, map[peer.ID]bootPeer{mid: ans(true), high: ans(true)}, true},
		{"everyone joins: not the lowest", mid, true, map[peer.ID]bootPeer{low: ans(true), high: ans(true)}, false},
		{"two not joining: the lower", mid, false, map[peer.ID]bootPeer{low: ans(true), high: ans(false)}, true},
		{"two not joining: the higher", high, false, map[peer.ID]bootPeer{low: ans(true), mid: ans(false)}, false},
		{"an older build counts as not joining", low, true, map[peer.ID]bootPeer{high: {answered: true, info: infoResponse{Voter: VoterAuto}}}, false},
		{"a silent peer counts as not joining", low, true, map[peer.ID]bootPeer{high: {}}, false},
		{"a joiner never eligible", high, false, map[peer.ID]bootPeer{low: {answered: true, info: infoResponse{Voter: VoterNever}}}, true},
	}
	for _, tc := range cases {
		if got := shouldBootstrap(tc.self, VoterAuto, tc.selfJoins, tc.peers); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}

	// Second hand: low (a joiner) knows only high (a joiner too), which
	// reports mid.
	hubSays := func(joining ...string) map[peer.ID]bootPeer {
		bp := ans(true)
		bp.info.Candidates = []string{low.String(), mid.String()}
		bp.info.Joining = joining
		return map[peer.ID]bootPeer{high: bp}
	}
	if shouldBootstrap(low, VoterAuto, true, hubSays(low.String())) {
		t.Fatal("a joiner founded although a reported candidate does not join")
	}
	if !shouldBootstrap(low, VoterAuto, true, hubSays(low.String(), mid.String())) {
		t.Fatal("the lowest joiner did not found when every candidate joins")
	}
	// mid says directly that it does not join: that wins over the report.
	peers := hubSays(low.String(), mid.String())
	peers[mid] = ans(false)
	if shouldBootstrap(low, VoterAuto, true, peers) {
		t.Fatal("a report that a candidate joins outweighed its own answer")
	}
}

// A fresh node's info answer says whether it joins, and which of its
// candidates do; the stuck ranking follows the founder order.
func TestInfoSaysJoinsAndRanksNonJoinersFirst(t *testing.T) {
	ids := sortedIDs(t, 2)
	low, high := ids[0], ids[1]
	n := newTestNode(t, "self", "c", func(c *Config) { c.JoinPeers = []peer.ID{high} })
	r := n.r
	now := time.Now()
	r.boot.mu.Lock()
	r.boot.peers[low] = &bootPeer{firstSeen: now, answered: true, lastOK: now, info: infoResponse{Cluster: "c", Voter: VoterAuto, Joins: true}}
	r.boot.peers[high] = &bootPeer{firstSeen: now, answered: true, lastOK: now, info: infoResponse{Cluster: "c", Voter: VoterAuto}}
	r.boot.mu.Unlock()
	in := r.info()
	if !in.Joins {
		t.Fatal("a node given --join peers does not say it joins")
	}
	if len(in.Candidates) != 2 || len(in.Joining) != 1 || in.Joining[0] != low.String() {
		t.Fatalf("candidates %v, joining %v: want both, and only the joiner joining", in.Candidates, in.Joining)
	}
	if m := newTestNode(t, "alone", "c", nil); m.r.info().Joins {
		t.Fatal("a node without --join says it joins")
	}
	// high does not join: it is rank 0 and given up first.
	peers := map[peer.ID]bootPeer{}
	r.boot.mu.Lock()
	for p, bp := range r.boot.peers {
		peers[p] = *bp
	}
	r.boot.mu.Unlock()
	if _, q := r.candidateView(peers, now); !q.Equal(now) {
		t.Fatalf("quiet %v, want %v", q, now)
	}
	v, _ := r.candidateView(peers, now.Add(r.stuckAfter()+time.Millisecond))
	if _, ok := v[high]; ok {
		t.Fatal("the candidate expected to found still counts after stuckAfter")
	}
	if _, ok := v[low]; !ok {
		t.Fatal("the joiner gave up together with the candidate expected to found")
	}
}
