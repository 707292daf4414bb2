package consensus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

func sortedIDs(t *testing.T, n int) []peer.ID {
	t.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		id, err := peer.IDFromPrivateKey(newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	slices.Sort(ids)
	return ids
}

// Leaves that know only the hub, started together with it (the hub last,
// after the leaves' discovery window): they meet through the hub's info
// answers and end in one cluster, whichever of them is the lowest.
func TestStarStartedTogetherOneCluster(t *testing.T) {
	t.Parallel()
	for round := range 2 {
		nodes := make([]*testNode, 4)
		for i := range nodes {
			nodes[i] = newTestNode(t, string(rune('a'+i)), "star", nil)
		}
		hub, leaves := nodes[0], nodes[1:]
		for _, l := range leaves {
			l.h.Peerstore().AddAddrs(hub.h.ID(), hub.h.Addrs(), peerstore.PermanentAddrTTL)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := l.h.Connect(ctx, peer.AddrInfo{ID: hub.h.ID(), Addrs: hub.h.Addrs()}); err != nil {
				t.Fatal(err)
			}
			cancel()
			l.r.PeerFound(hub.h.ID())
			hub.r.PeerFound(l.h.ID())
			l.run()
		}
		if round == 1 {
			// The leaves have waited longer than their discovery window.
			time.Sleep(2 * testMultiplier * DefaultTimings(1).Discovery) // the scenario, not synchronisation
		}
		hub.run()
		waitUntil(t, testDeadline, "one cluster of the hub and its leaves", func() error {
			_, err := agreed(nodes)
			return err
		})
		for _, n := range nodes {
			n.kill()
		}
	}
}

// A node with a join token never founds a cluster, and one with --join
// peers founds only once one of them answered.
func TestMayFound(t *testing.T) {
	n := newTestNode(t, "a", "c", nil)
	ids := sortedIDs(t, 2)
	now := time.Now()
	if !n.r.mayFound(nil, now) {
		t.Fatal("a node without join peers or token may not found")
	}
	n.r.cfg.JoinPeers = []peer.ID{ids[0]}
	if n.r.mayFound(map[peer.ID]bootPeer{ids[1]: {answered: true, lastOK: now}}, now) {
		t.Fatal("founded before its join peer answered")
	}
	if !n.r.mayFound(map[peer.ID]bootPeer{ids[0]: {answered: true, lastOK: now}}, now) {
		t.Fatal("did not found although its join peer answered")
	}
	n.r.joinTok = &ParsedJoinToken{ClusterFP: "x"}
	if n.r.mayFound(map[peer.ID]bootPeer{ids[0]: {answered: true, lastOK: now}}, now) {
		t.Fatal("a node with a join token may found a cluster")
	}
}

// The decision waits a discovery window after the newest candidate; a
// stuck lowest candidate stops counting after stuckAfter, the next one up
// only after twice that, so they do not all give up at once.
func TestCandidateViewQuietAndStuckRanks(t *testing.T) {
	n := newTestNode(t, "self", "c", nil)
	r := n.r
	ids := sortedIDs(t, 3)
	low, mid := ids[0], ids[1]
	t0 := time.Now()
	cand := func(p peer.ID) bootPeer {
		return bootPeer{answered: true, lastOK: t0, info: infoResponse{Voter: VoterAuto}}
	}
	peers := map[peer.ID]bootPeer{low: cand(low), mid: cand(mid)}
	_, quiet := r.candidateView(peers, t0)
	if !quiet.Equal(t0) {
		t.Fatalf("quiet %v, want the first sighting %v", quiet, t0)
	}
	// A candidate reported later moves quiet on.
	hub := ids[2]
	peers[hub] = bootPeer{answered: true, lastOK: t0, info: infoResponse{InCluster: false, Voter: VoterNever}}
	t1 := t0.Add(time.Second)
	if _, q := r.candidateView(peers, t1); !q.Equal(t1) {
		t.Fatalf("quiet %v after a new candidate at %v", q, t1)
	}
	sa := r.stuckAfter()
	v, _ := r.candidateView(peers, t1.Add(sa+time.Millisecond))
	if _, ok := v[low]; ok {
		t.Fatal("the lowest candidate still counts after stuckAfter")
	}
	if _, ok := v[mid]; !ok {
		t.Fatal("the second candidate gave up together with the first")
	}
	v, _ = r.candidateView(peers, t1.Add(2*sa+time.Millisecond))
	if _, ok := v[mid]; ok {
		t.Fatal("the second candidate still counts after 2·stuckAfter")
	}
}

// Peers listed in an info answer are asked directly, bounded in number and
// addresses; ones that never answer are forgotten and not taken again at
// once.
func TestLearnRelayedBounded(t *testing.T) {
	n := newTestNode(t, "self", "c", nil)
	r := n.r
	ids := sortedIDs(t, 3)
	now := time.Now()
	r.learnRelayed([]relayPeer{
		{ID: ids[0].String(), Addrs: []string{"/ip4/192.0.2.1/tcp/1"}},
		{ID: ids[1].String(), Addrs: []string{"not an address"}},
		{ID: "not a peer", Addrs: []string{"/ip4/192.0.2.1/tcp/1"}},
		{ID: n.h.ID().String(), Addrs: []string{"/ip4/192.0.2.1/tcp/1"}},
	}, now)
	r.boot.mu.Lock()
	got := len(r.boot.peers)
	_, ok := r.boot.peers[ids[0]]
	r.boot.mu.Unlock()
	if got != 1 || !ok {
		t.Fatalf("learnt %d peers (want only the valid one)", got)
	}
	// Past PeerDrop without an answer, queryPeers forgets it.
	r.boot.mu.Lock()
	r.boot.peers[ids[0]].firstSeen = now.Add(-2 * r.t.PeerDrop)
	r.boot.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.queryPeers(ctx)
	r.learnRelayed([]relayPeer{{ID: ids[0].String(), Addrs: []string{"/ip4/192.0.2.1/tcp/1"}}}, time.Now())
	r.boot.mu.Lock()
	_, ok = r.boot.peers[ids[0]]
	relayed := r.boot.relayed
	r.boot.mu.Unlock()
	if ok || relayed != 0 {
		t.Fatalf("an unreachable relayed peer was kept or taken again (relayed %d)", relayed)
	}
	var many []relayPeer
	for range maxCandidates + 10 {
		id, err := peer.IDFromPrivateKey(newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		many = append(many, relayPeer{ID: id.String(), Addrs: []string{"/ip4/192.0.2.1/tcp/1"}})
	}
	r.learnRelayed(many, time.Now())
	r.boot.mu.Lock()
	relayed = r.boot.relayed
	r.boot.mu.Unlock()
	if relayed != maxCandidates {
		t.Fatalf("%d relayed peers, want the cap %d", relayed, maxCandidates)
	}
}

// More made-up candidates than maxStuckRank, only reported by a peer, are
// given up together at most; a candidate that answers this node itself is
// given up one period after the last of them, never with them: it founds
// then, and a node that gave it up at the same instant would found a second
// cluster (Test_Security_StrangerCannotSplitFreshLAN).
func TestCandidateViewAnsweringCandidateOutlastsReported(t *testing.T) {
	n := newTestNode(t, "self", "c", nil)
	r := n.r
	ids := sortedIDs(t, 2)
	low, reporter := ids[0], ids[1]
	t0 := time.Now()
	peers := map[peer.ID]bootPeer{
		low:      {answered: true, lastOK: t0, info: infoResponse{Voter: VoterAuto}},
		reporter: {answered: true, lastOK: t0, info: infoResponse{Voter: VoterAuto, Candidates: lowFakeIDs(t, maxStuckRank+4)}},
	}
	if _, q := r.candidateView(peers, t0); !q.Equal(t0) {
		t.Fatalf("quiet %v, want %v", q, t0)
	}
	sa := r.stuckAfter()
	last := time.Duration(maxStuckRank+1) * sa // the reported candidates' last deadline
	v, _ := r.candidateView(peers, t0.Add(last+time.Millisecond))
	if got := len(v[reporter].info.Candidates); got != 0 {
		t.Fatalf("%d reported candidates still count after %s", got, last)
	}
	if _, ok := v[low]; !ok {
		t.Fatal("the candidate that answers gave up together with the reported ones")
	}
	v, _ = r.candidateView(peers, t0.Add(last+sa+time.Millisecond))
	if _, ok := v[low]; ok {
		t.Fatal("the candidate that answers still counts a period after the reported ones")
	}
}

// A stranger that reports more made-up candidates than the node remembers
// (4·maxCandidates) does not hide a candidate that answers the node itself:
// a node started a moment later, and lower, still counts, so the higher one
// does not found beside it.
func TestCandidateViewFullKeepsAnsweringCandidates(t *testing.T) {
	n := newTestNode(t, "self", "c", nil)
	r := n.r
	var low peer.ID
	for low == "" {
		if id := sortedIDs(t, 1)[0]; id < n.h.ID() {
			low = id
		}
	}
	reporter := sortedIDs(t, 1)[0]
	now := time.Now()
	for range 5 { // a new list of made-up candidates every round
		var list []string
		for _, id := range sortedIDs(t, maxCandidates) {
			list = append(list, id.String())
		}
		r.candidateView(map[peer.ID]bootPeer{reporter: {answered: true, lastOK: now, info: infoResponse{Voter: VoterAuto, Candidates: list}}}, now)
	}
	peers := map[peer.ID]bootPeer{
		reporter: {answered: true, lastOK: now, info: infoResponse{Voter: VoterAuto}},
		low:      {answered: true, lastOK: now, info: infoResponse{Voter: VoterAuto}},
	}
	v, _ := r.candidateView(peers, now)
	if _, ok := v[low]; !ok {
		t.Fatal("a lower candidate that answers is not counted once the candidates remembered are full")
	}
	if shouldBootstrap(n.h.ID(), VoterAuto, false, v) {
		t.Fatal("the node would found a cluster beside a lower candidate that answers it")
	}
	r.boot.mu.Lock()
	got := len(r.boot.cand)
	r.boot.mu.Unlock()
	if got > 4*maxCandidates+maxBootPeers {
		t.Fatalf("%d candidates remembered", got)
	}
}
