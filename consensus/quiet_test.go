package consensus

import (
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
