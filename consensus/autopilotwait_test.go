package consensus

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"github.com/libp2p/go-libp2p/core/network"
)

// TestAutopilotKeepsTheGoodVoterWhileAnEvictedOneHasNotLeft: three voters, A (the leader), B
// and C, and a non-voter D. B's stats calls stop answering (its raft still does), so autopilot
// counts it unhealthy; C is evicted, its removal held (a missing quorum holds it in a real
// cluster); at once B is quarantined (Config.NoVote). Autopilot must move C's vote, never B's:
// C's to D, B keeping its own. Before, autopilot counted C a live voter for DeadVoterGrace after
// its last answer and wanted A, C and D: it demoted B first (a failed-first demotion, B being
// unhealthy), and the configuration {A, C} it appended commits nothing, not even that demotion,
// since every member refuses C's key: no leader, for good. A healthy B would have lost its vote
// a round later, after D's promotion, leaving {A, C, D}: one more failure from no quorum.
func TestAutopilotKeepsTheGoodVoterWhileAnEvictedOneHasNotLeft(t *testing.T) {
	t.Parallel()
	var quarantined atomic.Pointer[string]
	nodes := startCluster(t, 4, "autopilot-wait", func(_ int, c *Config) {
		c.NoVote = func(id string) bool { q := quarantined.Load(); return q != nil && *q == id }
	})
	leader := settled(t, nodes, 3, true)
	var b, c, d *testNode
	for _, n := range otherThanAll(nodes, leader) {
		switch {
		case !leader.r.votes(n.h.ID()):
			d = n
		case b == nil:
			b = n
		default:
			c = n
		}
	}
	if b == nil || c == nil || d == nil {
		t.Fatalf("want two follower voters and a non-voter: %s", serverIDs(leader.r.Servers()))
	}

	// The promoter changes nothing until every live voter has answered a stats call in this
	// leadership (its Availability known): B's first answer comes before the hang.
	bid := raft.ServerID(b.h.ID().String())
	waitUntil(t, testDeadline, b.name+" answered the leader's stats call", func() error {
		leader.r.del.mu.Lock()
		defer leader.r.del.mu.Unlock()
		if _, ok := leader.r.del.avail[bid]; !ok {
			return errors.New("not yet")
		}
		return nil
	})
	// B's stats calls hang from now on; its raft answers as before. Writes keep the log moving,
	// so that the leader asks B again every round (a quiet cluster reuses an old answer).
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	b.h.SetStreamHandler(ProtocolStats, func(s network.Stream) {
		<-hang
		_ = s.Reset()
	})
	writes := 0
	write := func() {
		writes++
		registerFake(t, leader, fmt.Sprintf("autopilot-wait-%d", writes)) // on this leader: C, evicted, follows nobody
	}
	waitUntil(t, testDeadline, "the leader's autopilot counts "+b.name+" unhealthy", func() error {
		write()
		leader.r.del.mu.Lock()
		defer leader.r.del.mu.Unlock()
		if s := leader.r.del.state; s == nil || s.Servers[bid] == nil || s.Servers[bid].Health.Healthy {
			return errors.New("healthy")
		}
		return nil
	})

	release := evictHeld(t, leader, c)
	bs := b.h.ID().String()
	quarantined.Store(&bs)

	waitUntil(t, testDeadline, c.name+"'s vote moved to "+d.name+", "+b.name+" keeping its own", func() error {
		write()
		ss := leader.r.Servers()
		if !leader.r.votes(b.h.ID()) {
			t.Fatalf("%s lost its vote while the evicted %s was still in the configuration: %s", b.name, c.name, serverIDs(ss))
		}
		if leader.r.votes(c.h.ID()) || !leader.r.votes(d.h.ID()) {
			return fmt.Errorf("voters: %s", serverIDs(ss))
		}
		return nil
	})
	release()
	waitUntil(t, testDeadline, c.name+" leaves the configuration", func() error {
		if leader.r.hasServer(c.h.ID()) {
			return fmt.Errorf("servers: %s", serverIDs(leader.r.Servers()))
		}
		return nil
	})
	if !leader.r.IsLeader() || !leader.r.votes(b.h.ID()) {
		t.Fatalf("the leader leads: %v; servers: %s", leader.r.IsLeader(), serverIDs(leader.r.Servers()))
	}
	write()
}

// TestAutopilotChangesWaitForTheEvictedVoter: with an evicted voter C still in the configuration
// of three, autopilot counts C failed at once (not a DeadVoterGrace after its last answer), and
// its own changes follow the rule of evictions and leaves: a demotion or a removal of the good
// voter B waits (ErrConflict) and changes nothing, RemoveFailedServer leaves B too, while C's own
// demotion goes through. Each of these took B's vote, or left C alive, before.
func TestAutopilotChangesWaitForTheEvictedVoter(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "autopilot-rule", nil)
	leader := settled(t, nodes, 3, true)
	rest := otherThanAll(nodes, leader)
	b, c := rest[0], rest[1]
	bid, cid := raft.ServerID(b.h.ID().String()), raft.ServerID(c.h.ID().String())

	release := evictHeld(t, leader, c)
	known := leader.r.del.KnownServers()
	if known[cid] == nil || known[cid].NodeStatus != autopilot.NodeFailed || known[bid] == nil || known[bid].NodeStatus != autopilot.NodeAlive {
		t.Fatalf("autopilot's view: %s %v, %s %v; want the evicted one failed, the other alive", c.name, known[cid], b.name, known[bid])
	}

	ap := apRaft{Raft: leader.r.raft, r: leader.r}
	if err := ap.DemoteVoter(bid, 0, 0).Error(); !errors.Is(err, ErrConflict) {
		t.Fatalf("autopilot demoting %s while %s has not left: %v, want ErrConflict", b.name, c.name, err)
	}
	if err := ap.RemoveServer(bid, 0, 0).Error(); !errors.Is(err, ErrConflict) {
		t.Fatalf("autopilot removing %s while %s has not left: %v, want ErrConflict", b.name, c.name, err)
	}
	leader.r.del.RemoveFailedServer(&autopilot.Server{ID: bid})
	waitUntil(t, testDeadline, "the failed-server removal of "+b.name+" has run", func() error {
		leader.r.del.mu.Lock()
		defer leader.r.del.mu.Unlock()
		if leader.r.del.removing[bid] {
			return errors.New("running")
		}
		return nil
	})
	if !leader.r.votes(b.h.ID()) {
		t.Fatalf("%s lost its vote: %s", b.name, serverIDs(leader.r.Servers()))
	}
	if err := ap.AddVoter(cid, raft.ServerAddress(cid), 0, 0).Error(); !errors.Is(err, ErrConflict) {
		t.Fatalf("autopilot promoting the evicted %s: %v, want ErrConflict", c.name, err)
	}

	// The evicted voter's own demotion takes nothing from the quorum: it goes through.
	if err := ap.DemoteVoter(cid, 0, 0).Error(); err != nil {
		t.Fatalf("autopilot demoting the evicted %s: %v", c.name, err)
	}
	if leader.r.votes(c.h.ID()) || !leader.r.votes(b.h.ID()) {
		t.Fatalf("servers after %s's demotion: %s", c.name, serverIDs(leader.r.Servers()))
	}
	release()
	waitUntil(t, testDeadline, c.name+" leaves the configuration", func() error {
		if leader.r.hasServer(c.h.ID()) {
			return fmt.Errorf("servers: %s", serverIDs(leader.r.Servers()))
		}
		return nil
	})
	registerFake(t, leader, "after-autopilot-rule")
}

// TestDeadNonvoterRemovedPromptly: a dead non-voter leaves the configuration about
// DeadNonvoterGrace after its death (autopilot's RemoveFailedServer, which now takes memberMu and
// checks the rule of autopilotChangeWaits): the lock and the check cost no round.
func TestDeadNonvoterRemovedPromptly(t *testing.T) {
	t.Parallel()
	const grace = 3 * time.Second
	nodes := startCluster(t, 4, "dead-nonvoter", func(_ int, c *Config) { c.DeadNonvoterGrace = grace })
	leader := settled(t, nodes, 3, true)
	var victim *testNode
	for _, n := range otherThanAll(nodes, leader) {
		if !leader.r.votes(n.h.ID()) {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no non-voter: %s", serverIDs(leader.r.Servers()))
	}
	start := time.Now()
	victim.kill()
	waitUntil(t, testDeadline, "the dead non-voter removed", func() error {
		if leader.r.hasServer(victim.h.ID()) {
			return fmt.Errorf("servers: %s", serverIDs(leader.r.Servers()))
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("dead non-voter removed after %s (DeadNonvoterGrace %s, autopilot tick %s)", took.Round(time.Millisecond), grace, leader.r.t.AutopilotTick)
	if limit := grace + 3*leader.r.t.AutopilotTick + 6*time.Second; took > limit {
		t.Errorf("dead non-voter removed after %s, want ≤ %s", took, limit)
	}
}
