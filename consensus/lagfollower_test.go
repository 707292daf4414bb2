package consensus

import (
	"fmt"
	"testing"
	"time"
)

// TestLaggingMemberTakesALeaderThatOnceLeft: a member V (here the non-voter) that was down
// while L left (hydra leave: its allow-list entry and its raft server removed, nothing revoked),
// was approved again and became leader, comes back with a log from before L's leave. L
// replicates to V in batches (64 entries); once V has applied L's leave and its log's
// configuration does not hold L yet, mayRaft refuses L's next batch and its heartbeats ("not a
// member that may lead or vote"). V used to wait until it had seen no leader for PeerDrop (15 to
// 60 s here) and then ask a member to re-add it (rejoin); stuck for good if none of the members
// of its stale replica could answer. It asks at once now (refusedRaft): the answer's leader and
// voters stand until V has applied the answer's index. V's PeerDrop is long here, so that only
// the ask on a refusal can bring it back within the deadline.
func TestLaggingMemberTakesALeaderThatOnceLeft(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, "lagging-member", nil)
	first := settled(t, nodes, 3, true)
	// V is the non-voter (a member all the same: mayRaft judges a voter's leader alike), L a
	// voter that is not leading: with V down, L's leave leaves two voters, both up.
	voter := map[string]bool{}
	for _, s := range first.r.Servers() {
		voter[s.ID.String()] = s.Voter
	}
	var l, v *testNode
	for _, n := range nodes {
		switch {
		case !voter[n.h.ID().String()]:
			v = n
		case n != first && l == nil:
			l = n
		}
	}
	if l == nil || v == nil {
		t.Fatalf("no voter to leave or no non-voter among %s", serverIDs(first.r.Servers()))
	}
	// V goes down: its log ends before L's leave.
	v.kill()
	// L leaves and joins again, with enough entries while it is out that the window between
	// its leave and its return spans several AppendEntries batches (64 entries each).
	if err := l.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	l.kill()
	for i := range 300 {
		registerFake(t, leaderAmong(t, otherThanAll(nodes, l, v)), fmt.Sprint(i))
	}
	l.restart(otherThanAll(nodes, l, v))
	waitUntil(t, testDeadline, "L is a voter again", func() error {
		ldr := leaderAmong(t, otherThanAll(nodes, v))
		for _, s := range ldr.r.Servers() {
			if s.ID == l.h.ID() && s.Voter {
				if _, ok := ldr.r.State().Nodes[l.h.ID().String()]; ok {
					return nil
				}
			}
		}
		return fmt.Errorf("L is not a registered voter yet")
	})
	// L leads.
	cur := leaderAmong(t, otherThanAll(nodes, v))
	handLeadership(t, cur, l)
	// V comes back and L replicates its log to V.
	v.cfg.timings = func(t *Timings) { t.PeerDrop = 10 * testDeadline }
	v.restart(otherThanAll(nodes, v))
	back := time.Now()
	var ticks int
	var lastTick time.Time
	waitUntil(t, testDeadline, "V caught up with L's log", func() error {
		if !l.r.IsLeader() {
			return fmt.Errorf("L no longer leads") // the test needs L to replicate to V
		}
		if a, b := v.r.AppliedIndex(), l.r.AppliedIndex(); a+2 < b {
			// Traffic, as a live cluster has: once an RPC to V failed, raft pipelines to it and
			// sends the next batch on a new entry or after CommitTimeout (10 s here) only.
			if time.Since(lastTick) > 500*time.Millisecond {
				lastTick = time.Now()
				ticks++
				cmd, err := NewCommand(OpNodeRegister, NodeMeta{ID: fmt.Sprint("fake-tick-", ticks), Name: "tick"})
				if err != nil {
					return err
				}
				if _, err := l.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
					return fmt.Errorf("apply on L: %w", err)
				}
			}
			return fmt.Errorf("V applied %d, L %d", a, b)
		}
		if _, ok := v.r.State().Nodes[l.h.ID().String()]; !ok {
			return fmt.Errorf("V's replica does not list L")
		}
		return nil
	})
	t.Logf("V caught up %v after its restart (%d entries of traffic meanwhile)", time.Since(back).Round(time.Millisecond), ticks)
}

// leaderAmong waits until exactly one of the live nodes leads and returns it (agreed would
// want every server alive).
func leaderAmong(tb testing.TB, nodes []*testNode) *testNode {
	tb.Helper()
	var leader *testNode
	waitUntil(tb, testDeadline, "a leader", func() error {
		leader = nil
		for _, n := range alive(nodes) {
			if n.r.IsLeader() {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.name, n.name)
				}
				leader = n
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}
