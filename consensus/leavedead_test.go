package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// TestLeaderLeavesBesideADeadVoter: a leader of five voters, one of them dead, leaves (hydra
// leave; the four that remain are a quorum of themselves, so the leave is allowed): leadership
// goes to a voter that answers. Before, raft's own pick (the most caught-up voter, the first in
// the configuration among equals) was the dead voter in an idle cluster, the transfer timed out,
// and the leave failed (the API's 500) every time it was asked until autopilot moved the dead
// voter's vote.
func TestLeaderLeavesBesideADeadVoter(t *testing.T) {
	t.Parallel()
	nodes, leader, dead := leaderBesideADeadVoter(t, "leave-dead")
	if err := leader.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatalf("the leader leaving beside the dead voter %s: %v", dead.name, err)
	}
	rest := otherThanAll(nodes, leader, dead)
	waitUntil(t, testDeadline, "another voter leads without the old leader", func() error {
		for _, n := range rest {
			if !n.r.IsLeader() {
				continue
			}
			if n.r.hasServer(leader.h.ID()) {
				return fmt.Errorf("%s leads and still lists the old leader", n.name)
			}
			return nil
		}
		return errors.New("none of the others leads")
	})
}

// TestStoppingLeaderHandsOverBesideADeadVoter: a leader stopped gracefully (HandOver, before its
// work stops) beside a dead voter hands over to a voter that answers, as a leaving one does;
// raft's own pick was the dead voter, the transfer failed, and the cluster waited for an election.
func TestStoppingLeaderHandsOverBesideADeadVoter(t *testing.T) {
	t.Parallel()
	nodes, leader, dead := leaderBesideADeadVoter(t, "stop-dead")
	if err := leader.r.HandOver(ctxT(t, testDeadline)); err != nil {
		t.Fatalf("the leader handing over beside the dead voter %s: %v", dead.name, err)
	}
	waitUntil(t, testDeadline, "another voter leads", func() error {
		for _, n := range otherThanAll(nodes, leader, dead) {
			if n.r.IsLeader() {
				return nil
			}
		}
		return errors.New("none of the others leads")
	})
}

// leaderBesideADeadVoter starts five voters and kills the one raft would pick to lead after the
// leader (the first other voter of the configuration, all equally caught up), once the leader
// counts it unreachable.
func leaderBesideADeadVoter(t *testing.T, cluster string) (nodes []*testNode, leader, dead *testNode) {
	t.Helper()
	nodes = startCluster(t, 5, cluster, func(_ int, c *Config) { c.Voters = 5 })
	leader = settled(t, nodes, 5, true)
	byID := map[raft.ServerID]*testNode{}
	for _, n := range nodes {
		byID[raft.ServerID(n.h.ID().String())] = n
	}
	cfg, err := leader.r.configuration()
	if err != nil {
		t.Fatal(err)
	}
	// raft's pick among voters equally caught up: the first in the configuration.
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter && byID[s.ID] != leader {
			dead = byID[s.ID]
			break
		}
	}
	waitUntil(t, testDeadline, "every replica applied the leader's last entry", func() error {
		last := leader.r.raft.LastIndex()
		for _, n := range nodes {
			if got := n.r.raft.AppliedIndex(); got < last {
				return fmt.Errorf("%s applied %d of %d", n.name, got, last)
			}
		}
		return nil
	})
	dead.kill()
	waitUntil(t, testDeadline, "the leader counts "+dead.name+" unreachable", func() error {
		for _, p := range leader.r.Unreachable() {
			if p == dead.h.ID() {
				return nil
			}
		}
		return errors.New("it still counts it reachable")
	})
	return nodes, leader, dead
}
