package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"
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
