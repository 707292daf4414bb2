package consensus

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNonvoterReasonQuarantined: a non-voter the audits quarantined (Config.NoVote) says so in
// status, on every node, and is not counted as a candidate for a vote. Before, the reason was
// the promoter's for an eligible node (here: waiting for another eligible node to go from one
// voter to three), which the quarantined node could never be.
func TestNonvoterReasonQuarantined(t *testing.T) {
	var quarantined atomic.Value // the peer ID string NoVote names
	quarantined.Store("")
	nodes := startCluster(t, 2, "reason-quarantine", func(_ int, c *Config) {
		c.NoVote = func(id string) bool { return id == quarantined.Load().(string) }
	})
	leader := settled(t, nodes, 1, true)
	other := otherThan(nodes, leader)
	if why := leader.r.NonvoterReasons()[other.h.ID()]; !strings.Contains(why, "another eligible node") {
		t.Fatalf("before the quarantine: reason %q, want the even step's", why)
	}
	quarantined.Store(other.h.ID().String())
	for _, n := range nodes {
		why := n.r.NonvoterReasons()[other.h.ID()]
		if !strings.Contains(why, "quarantined") {
			t.Fatalf("%s: the quarantined non-voter's reason is %q, want it to say it is quarantined", n.name, why)
		}
	}
}

// TestNonvoterReasonWorker: a node that joined as a worker (a join token of that role) says
// that a worker never holds a vote, not that its voter preference is never: it was started with
// the default preference, and only its role keeps it from voting.
func TestNonvoterReasonWorker(t *testing.T) {
	a, w := founderAndWorker(t, "reason-worker")
	waitUntil(t, testDeadline, "the worker is a server that says why it has no vote", func() error {
		if !a.r.hasServer(w.h.ID()) || w.r.Role() != RoleWorker {
			return errors.New("not a worker server yet")
		}
		if why := a.r.NonvoterReasons()[w.h.ID()]; !strings.Contains(why, "worker") {
			return fmt.Errorf("reason %q, want it to say a worker never votes", why)
		}
		return nil
	})
}

// founderAndWorker starts a founder of cluster (no --admit lan) and a node that joins it with a
// worker join token; the worker is running, not yet known to be a server.
func founderAndWorker(t *testing.T, cluster string) (a, w *testNode) {
	t.Helper()
	a = newTestNode(t, "founder", cluster, func(c *Config) { c.Admit = "" })
	a.run()
	waitUntil(t, testDeadline, "founder leads an initialized cluster", func() error {
		if !a.r.Leading() || !a.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	id, secret, rec := NewJoinToken(a.r.State().ClusterID)
	rec.Role, rec.Created = RoleWorker, time.Now()
	rec.Expires = rec.Created.Add(time.Hour)
	tcmd, err := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.r.ApplyAs(ctxT(t, testDeadline), tcmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	w = newTestNode(t, "worker", cluster, func(c *Config) { c.JoinToken, c.NodeToken = secret, "worker-token" })
	connectAll(t, []*testNode{a, w})
	w.run()
	return a, w
}
