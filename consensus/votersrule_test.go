package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Voter growth (growVoters) against the other membership changes: its promotions are decided
// under memberMu from the configuration as it is then, and follow the rule of a voter whose key
// is revoked.

// growNode is a test node of cluster whose autopilot never promotes anyone (a stabilization
// time longer than the test), so that a vote can only come from growVoters; mod may adjust its
// config further.
func growNode(t *testing.T, name, cluster string, mod func(*Config)) *testNode {
	t.Helper()
	n := newTestNode(t, name, cluster, mod)
	n.r.t.Stabilization = time.Hour // before run: autopilot reads it every round
	return n
}

// serveStats answers n's stats calls with its stats, after hold (nil: at once).
func serveStats(n *testNode, hold func()) {
	p2p.Serve(n.h, ProtocolStats, 64<<10, time.Minute, testLogger(), func(context.Context, peer.ID, json.RawMessage) (any, error) {
		s := n.r.localStats()
		if hold != nil {
			hold()
		}
		return s, nil
	})
}

// TestGrowVotersLeavesOutACandidateEvictedDuringItsStatsCalls: one voter A and two eligible
// non-voters B and C; growVoters asks B and C for their stats, and while it waits for B's answer
// B is evicted and leaves the configuration. growVoters must not give B a vote: it decides again
// under memberMu, where B is no server any more, and C alone does not make an odd count. Before,
// it promoted from the configuration it read before its stats calls, outside memberMu: raft's
// AddVoter adds a server it does not have, so the evicted B came back as a voter, one that every
// member refuses (and a node that left by hydra leave came back the same way).
func TestGrowVotersLeavesOutACandidateEvictedDuringItsStatsCalls(t *testing.T) {
	t.Parallel()
	const cluster = "grow-evicted"
	nodes := []*testNode{growNode(t, "n0", cluster, nil), growNode(t, "n1", cluster, nil)}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.run()
	}
	leader := waitTwoMembers(t, nodes)
	b := otherThan(nodes, leader)

	// C joins with its stats calls refused, so that the growth its join starts finds one
	// candidate (B) and promotes nobody: two eligible non-voters for the test's own call.
	c := growNode(t, "c", cluster, nil)
	c.h.SetStreamHandler(ProtocolStats, func(s network.Stream) { _ = s.Reset() })
	nodes = append(nodes, c)
	connectAll(t, nodes)
	c.run()
	waitUntil(t, testDeadline, "c is a server", func() error {
		if !leader.r.hasServer(c.h.ID()) {
			return errors.New("not yet")
		}
		return nil
	})
	if got := leader.r.growVoters(ctxT(t, testDeadline)); got != 0 || voters(leader.r.Servers()) != 1 {
		t.Fatalf("growVoters promoted %d with c silent: %s, want 1 voter", got, serverIDs(leader.r.Servers()))
	}
	serveStats(c, nil)

	// B's stats answer waits while growVoters runs (the leader's autopilot asks too: its calls
	// are answered at once, unless they come while growVoters runs, which only delays them).
	asked := make(chan struct{})
	release := make(chan struct{})
	var askedOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	serveStats(b, func() {
		if leader.r.grow.run.TryLock() {
			leader.r.grow.run.Unlock()
			return
		}
		askedOnce.Do(func() { close(asked) })
		<-release
	})

	grown := make(chan int, 1)
	go func() { grown <- leader.r.growVoters(context.Background()) }()
	select {
	case <-asked:
	case <-time.After(testDeadline):
		t.Fatal("growVoters never asked b for its stats")
	}
	if err := leader.r.Evict(ctxT(t, testDeadline), b.h.ID(), testAdminToken); err != nil {
		t.Fatalf("evict b: %v", err)
	}
	waitUntil(t, testDeadline, "the evicted b leaves the configuration", func() error {
		if leader.r.hasServer(b.h.ID()) {
			return fmt.Errorf("servers: %s", serverIDs(leader.r.Servers()))
		}
		return nil
	})
	releaseOnce.Do(func() { close(release) })
	var got int
	select {
	case got = <-grown:
	case <-time.After(testDeadline):
		t.Fatalf("growVoters did not return; servers: %s", serverIDs(leader.r.Servers()))
	}
	if leader.r.hasServer(b.h.ID()) {
		t.Fatalf("b, evicted while growVoters asked for its stats, is a server again: %s (growVoters promoted %d)", serverIDs(leader.r.Servers()), got)
	}
	if got != 0 || voters(leader.r.Servers()) != 1 {
		t.Fatalf("growVoters promoted %d: %s, want the leader the only voter (c alone makes no odd count)", got, serverIDs(leader.r.Servers()))
	}
	registerFake(t, leader, "after-grow-evicted")
}

// TestGrowVotersWaitsForTheEvictedVoter: a cluster that wants 5 voters has 3 (A, B, C) and a
// non-voter D; C is evicted, its removal held (a missing quorum holds it in a real cluster), and
// E joins. Its join must promote nobody while C is still in the configuration: C never votes
// again, and {A,B,C,D} needs A, B and D, so a newcomer's promotion (not vetted for stability as
// autopilot's are) that it never acknowledges would commit nothing and block every later change,
// C's removal too. Once C has left, growth goes on: 2 voters become 3, never 4. Before, E's join
// promoted D and E at once, 5 voters with C among them, 4 once C had left: an even count.
func TestGrowVotersWaitsForTheEvictedVoter(t *testing.T) {
	t.Parallel()
	const cluster = "grow-revoked"
	five := func(c *Config) { c.Voters = 5 }
	var nodes []*testNode
	for i := range 4 {
		nodes = append(nodes, growNode(t, fmt.Sprintf("n%d", i), cluster, five))
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.run()
	}
	leader := settled(t, nodes, 3, true)
	var c, d *testNode
	for _, n := range otherThanAll(nodes, leader) {
		switch {
		case !leader.r.votes(n.h.ID()):
			d = n
		case c == nil:
			c = n
		}
	}
	if c == nil || d == nil {
		t.Fatalf("want a follower voter and a non-voter: %s", serverIDs(leader.r.Servers()))
	}
	release := evictHeld(t, leader, c)

	e := growNode(t, "e", cluster, five)
	nodes = append(nodes, e)
	connectAll(t, nodes)
	e.run()
	waitUntil(t, testDeadline, "e is a server", func() error {
		if !leader.r.hasServer(e.h.ID()) {
			return errors.New("not yet")
		}
		return nil
	})
	// The join's growth has run by the end of this one (growVoters runs one at a time).
	if got := leader.r.growVoters(ctxT(t, testDeadline)); got != 0 {
		t.Errorf("growVoters promoted %d while the evicted %s was in the configuration", got, c.name)
	}
	if ss := leader.r.Servers(); voters(ss) != 3 || leader.r.votes(d.h.ID()) || leader.r.votes(e.h.ID()) {
		t.Fatalf("voters while the evicted %s has not left: %s, want the 3 of before (%s, %s still non-voters)", c.name, serverIDs(ss), d.name, e.name)
	}

	release()
	waitUntil(t, testDeadline, c.name+" leaves the configuration", func() error {
		if leader.r.hasServer(c.h.ID()) {
			return fmt.Errorf("servers: %s", serverIDs(leader.r.Servers()))
		}
		return nil
	})
	if got := leader.r.growVoters(ctxT(t, testDeadline)); got != 1 {
		t.Errorf("growVoters promoted %d once %s had left, want 1 (2 voters become 3)", got, c.name)
	}
	if ss := leader.r.Servers(); voters(ss) != 3 {
		t.Fatalf("voters once %s had left: %s, want 3", c.name, serverIDs(ss))
	}
	registerFake(t, leader, "after-grow-revoked")
}
