package consensus

import (
	"fmt"
	"testing"
	"time"
)

// TestAutopilotStatsReusedWhileQuiet: while the log does not move, the leader's autopilot asks
// each follower for its stats once per statsReuse instead of once per tick (AutopilotTick), and
// still asks.
func TestAutopilotStatsReusedWhileQuiet(t *testing.T) {
	nodes := startCluster(t, 3, "quiet", nil)
	leader := settled(t, nodes, 3, true)
	tick := leader.r.t.AutopilotTick
	window := 6 * tick // 6 calls without reuse; 2–4 with it (statsReuse is more than one tick)
	for attempt := 1; ; attempt++ {
		idx := leader.r.raft.LastIndex()
		before := make([]int64, len(nodes))
		for i, n := range nodes {
			before[i] = n.r.statCalls.Load()
		}
		<-time.After(window) // a measurement window, not a synchronisation
		if leader.r.raft.LastIndex() != idx || !leader.r.IsLeader() {
			if attempt == 3 {
				t.Fatal("the log kept moving: no quiet window to measure")
			}
			continue
		}
		for i, n := range nodes {
			if n == leader {
				continue
			}
			got := n.r.statCalls.Load() - before[i]
			if got < 1 || got > 4 {
				t.Fatalf("%s answered %d stats calls in %v of a quiet cluster, want 1–4 (an answer reused for up to %v, not a call every %v tick)",
					n.name, got, window, statsReuse, tick)
			}
		}
		return
	}
}

// TestFollowersLearnACommitWithoutWaitingForCommitTimeout: raft's idle AppendEntries (every
// Commit–2·Commit) is long, so a write on a quiet cluster reaches the followers' state through
// the leader's trailing barrier (trailer.go), well before the next CommitTimeout would have
// carried its commit index.
func TestFollowersLearnACommitWithoutWaitingForCommitTimeout(t *testing.T) {
	nodes := startCluster(t, 3, "trail", nil)
	leader := settled(t, nodes, 3, true)
	within := leader.r.t.Commit / 2 // without the trailer a follower learns after ≥ Commit
	for attempt := 1; ; attempt++ {
		// Quiet first: no entry for a while, so that no other write carries the commit index.
		idx := leader.r.raft.LastIndex()
		<-time.After(2 * leader.r.t.Trail) // a measurement window, not a synchronisation
		if leader.r.raft.LastIndex() != idx || !leader.r.IsLeader() {
			if attempt == 5 {
				t.Fatal("the log kept moving: no quiet cluster to write to")
			}
			continue
		}
		name := fmt.Sprintf("w%d", attempt)
		registerFake(t, leader, name)
		start := time.Now()
		waitUntil(t, testDeadline, "followers apply the write", func() error {
			for _, n := range nodes {
				if !hasFake(n, name) {
					return fmt.Errorf("%s has not applied it", n.name)
				}
			}
			return nil
		})
		if took := time.Since(start); took > within {
			if leader.r.raft.LastIndex() != idx+2 && attempt < 5 { // more than the write and its barrier
				continue
			}
			t.Fatalf("followers applied a write on a quiet cluster after %v, want < %v (Commit %v)", took, within, leader.r.t.Commit)
		}
		return
	}
}
