package consensus

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A leader that falls silent with its connections open (a cut cable, a
// closed lid: no reset) is replaced by the silence watch: raft's own
// follower timers are pushed out of the test's reach (ReloadConfig), so
// only the watch, with a majority of voters agreeing, can elect. The new
// leader keeps the committed state.
func Test_SilentLeaderReplacedByWatch(t *testing.T) {
	nodes := startCluster(t, 3, "silent", nil)
	leader := settled(t, nodes, 3, false)
	registerFake(t, leader, "before")
	waitUntil(t, testDeadline, "every node has the entry", func() error {
		for _, n := range nodes {
			if !hasFake(n, "before") {
				return fmt.Errorf("%s lacks it", n.name)
			}
		}
		return nil
	})
	for _, n := range nodes {
		if n == leader {
			continue
		}
		rc := n.r.raft.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = 10*testDeadline, 10*testDeadline
		if err := n.r.raft.ReloadConfig(rc); err != nil {
			t.Fatal(err)
		}
	}
	leader.freeze()
	start := time.Now()
	var next *testNode
	waitUntil(t, testDeadline, "a survivor leads", func() error {
		next = nil
		for _, n := range nodes {
			if n != leader && n.r.Leading() {
				next = n
			}
		}
		if next == nil {
			return errors.New("no established leader")
		}
		for _, n := range nodes {
			if l, ok := n.r.Leader(); n != leader && (!ok || l != next.h.ID()) {
				return fmt.Errorf("%s does not follow %s", n.name, next.name)
			}
		}
		return nil
	})
	t.Logf("%s leads %v after the leader froze", next.name, time.Since(start).Round(time.Millisecond))
	if !hasFake(next, "before") {
		t.Fatal("the new leader lacks the committed entry")
	}
}

// freshRank puts the survivors whose log is newest first, so that the first to start an
// election is one the others will vote for; equal logs go in peer-ID order, unknown logs last.
func TestFreshRank(t *testing.T) {
	ids := make([]peer.ID, 5)
	for i := range ids {
		id, err := peer.IDFromPrivateKey(newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	dead := ids[2]
	rank := func(self peer.ID, logs map[peer.ID]logPos) int {
		t.Helper()
		r, ok := freshRank(self, dead, ids, logs)
		if !ok {
			t.Fatalf("%s has no rank", self)
		}
		return r
	}
	same := map[peer.ID]logPos{ids[0]: {3, 10}, ids[1]: {3, 10}, ids[3]: {3, 10}, ids[4]: {3, 10}}
	for i, want := range map[int]int{0: 0, 1: 1, 3: 2, 4: 3} {
		if got := rank(ids[i], same); got != want {
			t.Errorf("equal logs: voter %d ranks %d, want %d (peer-ID order)", i, got, want)
		}
	}
	// ids[0] missed the last entry, ids[4] has a newer term: 4, then 1 and 3, then 0.
	mixed := map[peer.ID]logPos{ids[0]: {3, 9}, ids[1]: {3, 10}, ids[3]: {3, 10}, ids[4]: {4, 2}}
	for i, want := range map[int]int{4: 0, 1: 1, 3: 2, 0: 3} {
		if got := rank(ids[i], mixed); got != want {
			t.Errorf("mixed logs: voter %d ranks %d, want %d", i, got, want)
		}
	}
	// ids[1] did not answer: last.
	partial := map[peer.ID]logPos{ids[0]: {3, 10}, ids[3]: {3, 10}, ids[4]: {3, 10}}
	if got := rank(ids[1], partial); got != 3 {
		t.Errorf("a voter whose log is unknown ranks %d, want last (3)", got)
	}
	if _, ok := freshRank(dead, dead, ids, same); ok {
		t.Error("the dead leader got a rank")
	}
}
