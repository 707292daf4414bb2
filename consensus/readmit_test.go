package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hydra-compute/hydra/p2p"
)

// evictMember starts a cluster of three, evicts a follower (hydra remove)
// and waits until the leader's configuration dropped it and its key is
// refused; it returns the nodes, the leader and the evicted node.
func evictMember(t *testing.T, cluster string) (nodes []*testNode, leader, gone *testNode) {
	t.Helper()
	nodes = startCluster(t, 3, cluster, nil)
	leader = settled(t, nodes, 3, true)
	gone = otherThan(nodes, leader)
	if err := leader.r.Evict(ctxT(t, testDeadline), gone.h.ID(), testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, testDeadline, "the evicted node leaves the configuration", func() error {
		if leader.r.hasServer(gone.h.ID()) || leader.r.roleOf(gone.h.ID()) != "" {
			return errors.New("still a server or a member")
		}
		return nil
	})
	return nodes, leader, gone
}

// waitReadmitted waits until n is a server of the leader's configuration
// again, knows a leader, and applies an entry proposed after now.
func waitReadmitted(t *testing.T, nodes []*testNode, n *testNode, name string) {
	t.Helper()
	waitUntil(t, testDeadline, "the approved node is a server with a leader again", func() error {
		l, err := agreed(nodes)
		if err != nil {
			return err
		}
		if !l.r.hasServer(n.h.ID()) {
			return fmt.Errorf("%s is not a server of %s's configuration", n.name, l.name)
		}
		if n.r.Role() != RoleMember {
			return fmt.Errorf("%s's own role is %q", n.name, n.r.Role())
		}
		return nil
	})
	l, _ := agreed(nodes)
	registerFake(t, l, name)
	waitUntil(t, testDeadline, "the approved node applies a new entry", func() error {
		if !hasFake(n, name) {
			return errors.New("not applied yet")
		}
		return nil
	})
}

// TestReadmitAfterRemoveRunning: a node removed (hydra remove) while it
// runs and then approved again with its peer ID comes back as a member:
// a raft server that has a leader and applies new entries.
func TestReadmitAfterRemoveRunning(t *testing.T) {
	nodes, leader, gone := evictMember(t, "readmit-run")
	if _, err := leader.r.Approve(ctxT(t, testDeadline), gone.h.ID().String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitReadmitted(t, nodes, gone, "after-readmit")
}

// TestReadmitAfterRemoveRestarted: the same with the removed node stopped
// before the approval and started again with its raft data afterwards.
func TestReadmitAfterRemoveRestarted(t *testing.T) {
	nodes, leader, gone := evictMember(t, "readmit-restart")
	gone.kill()
	if _, err := leader.r.Approve(ctxT(t, testDeadline), gone.h.ID().String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	gone.restart(alive(nodes))
	waitReadmitted(t, nodes, gone, "after-readmit")
}

// TestReadmitAfterRemoveRestartedUndiscovered: the removed node restarts
// on its old address after the approval, and nothing tells it about the
// others (no --join, no mDNS, as in the soak run that found this): the
// leader, which still knows its address, must bring it back. Before, it
// never did: the node only campaigns in its old configuration, and only a
// server of the leader's configuration is dialled by anyone.
func TestReadmitAfterRemoveRestartedUndiscovered(t *testing.T) {
	nodes, leader, gone := evictMember(t, "readmit-undiscovered")
	gone.listen = gone.h.Addrs()[0].String()
	gone.kill()
	if _, err := leader.r.Approve(ctxT(t, testDeadline), gone.h.ID().String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	gone.open()
	gone.run()
	waitReadmitted(t, nodes, gone, "after-readmit")
}

// TestRemovedStaysOutUnlessApproved: a removed node that is not approved
// again and restarts where the leader can reach it, in this cluster by its
// own raft state, is not added back by the leader's readmission round.
func TestRemovedStaysOutUnlessApproved(t *testing.T) {
	nodes, leader, gone := evictMember(t, "readmit-denied")
	gone.listen = gone.h.Addrs()[0].String()
	gone.kill()
	gone.open()
	gone.run()
	ctx := ctxT(t, testDeadline)
	var in infoResponse
	if err := p2p.Call(ctx, leader.h, gone.h.ID(), ProtocolInfo, struct{}{}, &in); err != nil || !in.InCluster || in.ClusterID != leader.r.State().ClusterID {
		t.Fatalf("the removed node does not answer as a node of this cluster (the check below would prove nothing): %+v, %v", in, err)
	}
	leader.r.readmitMembers(ctx) // synchronous: it returns after its adds
	if leader.r.hasServer(gone.h.ID()) || leader.r.Access(gone.h.ID()) != p2p.AccessRefused {
		t.Fatal("a removed node that was not approved again is back")
	}
	if _, err := agreed(otherThanAll(nodes, gone)); err != nil {
		t.Fatal(err)
	}
}

func otherThanAll(nodes []*testNode, n *testNode) []*testNode {
	var out []*testNode
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}
