package consensus

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/p2p"
)

// TestAutopilotStatsReusedWhileQuiet: while the log does not move and the followers answer the
// leader's heartbeats, the leader's autopilot does not ask them for their stats (at most one
// refresh per statsRefresh, instead of a call every statsReuse), yet keeps them healthy from the
// heartbeats; once the log moves it asks them again (before their refresh). The stats calls of the silence watch (a
// follower that missed the leader's heartbeats for Silence asks the leader and the other voters,
// silence.go) are not the autopilot's: a heartbeat late on a loaded machine sets one off, and
// the test makes two in each window on purpose, which must not count.
func TestAutopilotStatsReusedWhileQuiet(t *testing.T) {
	nodes := startCluster(t, 3, "quiet", nil)
	leader := settled(t, nodes, 3, true)
	tick := leader.r.t.AutopilotTick
	window := 6 * tick // 6 calls without reuse, 2–4 with statsReuse alone
	probe := func(from, to *testNode) {
		t.Helper()
		var s statsResponse
		if err := p2p.Call(ctxT(t, testDeadline), from.h, to.h.ID(), ProtocolStats, struct{}{}, &s); err != nil {
			t.Fatalf("%s's silence probe of %s: %v", from.name, to.name, err)
		}
	}
	for attempt := 1; ; attempt++ {
		idx := leader.r.raft.LastIndex()
		before := make([]int64, len(nodes))
		for i, n := range nodes {
			before[i] = n.r.statCalls.Load()
		}
		for _, n := range nodes {
			if n != leader {
				for _, o := range nodes {
					if o != leader && o != n {
						probe(o, n)
						probe(o, n)
					}
				}
			}
		}
		<-time.After(window) // a measurement window, not a synchronisation
		if leader.r.raft.LastIndex() != idx || !leader.r.IsLeader() {
			if attempt == 3 {
				t.Fatal("the log kept moving: no quiet window to measure")
			}
			continue
		}
		leader.r.del.mu.Lock()
		st := leader.r.del.state
		leader.r.del.mu.Unlock()
		for i, n := range nodes {
			if n == leader {
				continue
			}
			if got := n.r.statCalls.Load() - before[i]; got > 1 {
				t.Fatalf("%s answered %d stats calls in %v of a quiet cluster, want ≤ 1 (heartbeats answered stand in for them up to %v)",
					n.name, got, window, statsRefresh)
			}
			srv := st.Servers[raft.ServerID(n.h.ID().String())]
			if srv == nil || !srv.Health.Healthy || srv.Stats.LastContact < 0 || srv.Stats.LastContact > leader.r.t.LastContactMax {
				t.Fatalf("autopilot's view of %s on a quiet cluster: %+v, want healthy, heard within %v", n.name, srv, leader.r.t.LastContactMax)
			}
		}
		break
	}
	// Once the log moves, the leader asks again at its autopilot's next update instead of at the
	// refresh: a call that comes before the refresh of the answer the leader holds is due was
	// the move's. The calm autopilot's next update may be AutopilotIdleTick away (20 s: more than
	// the 15 s this once allowed, so where the write fell in the calm tick decided); the test
	// wakes it, as an event the leader acts on would, after waiting until no refresh is due
	// soon, so that a refresh cannot stand in for the move's call.
	var due time.Time
	waitUntil(t, testDeadline, "no stats refresh due soon", func() error {
		leader.r.del.mu.Lock()
		defer leader.r.del.mu.Unlock()
		due = time.Time{}
		for _, n := range nodes {
			if n == leader {
				continue
			}
			q, ok := leader.r.del.quiet[raft.ServerID(n.h.ID().String())]
			if !ok {
				return fmt.Errorf("the leader holds no answer of %s", n.name)
			}
			if d := q.at.Add(statsRefresh); due.IsZero() || d.Before(due) {
				due = d
			}
		}
		if left := time.Until(due); left < 4*tick {
			return fmt.Errorf("a refresh is due in %v", left)
		}
		return nil
	})
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		before[i] = n.r.statCalls.Load()
	}
	registerFake(t, leader, "moved")
	leader.r.apKick.kick()
	waitUntil(t, testDeadline, "the followers asked for their stats once the log moved", func() error {
		for i, n := range nodes {
			if n != leader && n.r.statCalls.Load() == before[i] {
				return fmt.Errorf("%s was not asked", n.name)
			}
		}
		return nil
	})
	if late := time.Since(due); late >= 0 {
		t.Fatalf("the followers were asked %v after a refresh (%v) was due: the refresh, not the move, may have done it", late, statsRefresh)
	}
}

// TestAvailabilityChangeReachesACalmLeader: on a quiet cluster the leader asks a follower for
// its stats only every statsRefresh, so a follower whose Availability changed says so
// (AvailabilityChanged), and the leader, calm until then, knows within a few seconds.
func TestAvailabilityChangeReachesACalmLeader(t *testing.T) {
	var battery [3]atomic.Bool
	nodes := startCluster(t, 3, "availnote", func(i int, c *Config) {
		c.Availability = func() Availability { return Availability{OnBattery: battery[i].Load()} }
	})
	leader := settled(t, nodes, 3, true)
	waitUntil(t, testDeadline, "the leader's autopilot calm", func() error {
		if !leader.r.AutopilotCalm() {
			return errors.New("brisk")
		}
		return nil
	})
	f := otherThan(nodes, leader)
	for i, n := range nodes {
		if n == f {
			battery[i].Store(true)
		}
	}
	start := time.Now()
	f.r.AvailabilityChanged()
	id := raft.ServerID(f.h.ID().String())
	waitUntil(t, testDeadline, "the leader knows the follower is on battery", func() error {
		leader.r.del.mu.Lock()
		a := leader.r.del.avail[id]
		leader.r.del.mu.Unlock()
		if !a.OnBattery {
			return errors.New("not yet")
		}
		return nil
	})
	if took := time.Since(start); took > statsRefresh/2 {
		t.Fatalf("the leader learned the change after %v: the refresh (%v), not the notice, told it", took, statsRefresh)
	}
}

// TestMembershipLoopSleepsWhileSettled: a settled member's membership loop does not poll every
// MemberPoll; it looks again when an entry is applied (here a node registering), within about
// MemberPoll, on every node.
func TestMembershipLoopSleepsWhileSettled(t *testing.T) {
	nodes := startCluster(t, 3, "memloop", nil)
	leader := settled(t, nodes, 3, true)
	window := 4 * leader.r.t.MemberPoll // 4 rounds each if it polled
	for attempt := 1; ; attempt++ {
		idx := leader.r.raft.LastIndex()
		before := make([]int64, len(nodes))
		for i, n := range nodes {
			before[i] = n.r.memberRuns.Load()
		}
		<-time.After(window) // a measurement window, not a synchronisation
		if leader.r.raft.LastIndex() != idx || !leader.r.IsLeader() {
			if attempt == 3 {
				t.Fatal("the log kept moving: no quiet window to measure")
			}
			continue
		}
		for i, n := range nodes {
			if got := n.r.memberRuns.Load() - before[i]; got > 1 {
				t.Fatalf("%s's membership loop ran %d times in %v of a settled cluster, want ≤ 1", n.name, got, window)
			}
		}
		break
	}
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		before[i] = n.r.memberRuns.Load()
	}
	start := time.Now()
	registerFake(t, leader, "wake")
	waitUntil(t, testDeadline, "every membership loop looks after the entry is applied", func() error {
		for i, n := range nodes {
			if n.r.memberRuns.Load() == before[i] {
				return fmt.Errorf("%s's loop still sleeps", n.name)
			}
		}
		return nil
	})
	if took := time.Since(start); took > leader.r.t.MemberIdle/2 {
		t.Fatalf("the membership loops looked %v after the entry: their idle timer (%v), not the entry, woke them", took, leader.r.t.MemberIdle)
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
