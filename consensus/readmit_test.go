package consensus

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// evictMember starts a cluster of three (mod as startCluster's), evicts a
// follower (hydra remove) and waits until the leader's configuration
// dropped it and its key is refused; it returns the nodes, the leader and
// the evicted node.
func evictMember(t *testing.T, cluster string, mod func(i int, c *Config)) (nodes []*testNode, leader, gone *testNode) {
	t.Helper()
	nodes = startCluster(t, 3, cluster, mod)
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
	// The leader can change between the wait above and the proposal (the
	// readmitted node may campaign once at a higher term before it hears
	// the leader): applyThroughLeader proposes through whichever leader the
	// nodes agree on, again until one takes it. A NodeRegister for the same
	// made-up node is idempotent, so a retry after a lost answer adds nothing.
	cmd, err := NewCommand(OpNodeRegister, NodeMeta{ID: "fake-" + name, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	applyThroughLeader(t, nodes, "a new entry", cmd, testAdminToken)
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
	t.Parallel()
	nodes, leader, gone := evictMember(t, "readmit-run", nil)
	if _, err := leader.r.Approve(ctxT(t, testDeadline), gone.h.ID().String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitReadmitted(t, nodes, gone, "after-readmit")
}

// TestReadmitAfterRemoveRestarted: the same with the removed node stopped
// before the approval and started again with its raft data afterwards.
func TestReadmitAfterRemoveRestarted(t *testing.T) {
	t.Parallel()
	nodes, leader, gone := evictMember(t, "readmit-restart", nil)
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
	nodes, leader, gone := evictMember(t, "readmit-undiscovered", nil)
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
	nodes, leader, gone := evictMember(t, "readmit-denied", nil)
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

// TestReadmitWakesOnConnect: a removed node approved again, away long
// enough that the leader's tries backed off to MemberIdle and whose
// addresses the leader forgot, restarts on another port with no discovery
// and connects to the leader (a connection the leader dials itself does
// not count): it is a server again within a round of the
// membership loop, not after MemberIdle (made long here, so that the
// difference is wide). Before, nothing woke the leader's schedule, and it
// knew no address to ask the node at.
func TestReadmitWakesOnConnect(t *testing.T) {
	const idle = 3 * time.Minute
	nodes, leader, gone := evictMember(t, "readmit-wake", func(_ int, c *Config) {
		c.timings = func(t *Timings) { t.MemberIdle = idle }
	})
	id := gone.h.ID()
	gone.kill()
	if _, err := leader.r.Approve(ctxT(t, testDeadline), id.String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, testDeadline, "the leader tries the approved node (and fails: it is down)", func() error {
		leader.r.readmit.mu.Lock()
		defer leader.r.readmit.mu.Unlock()
		if tr, ok := leader.r.readmit.next[id]; !ok || tr.last.IsZero() {
			return errors.New("not tried yet")
		}
		return nil
	})
	waitUntil(t, testDeadline, "the leader's connection to the killed node closes", func() error {
		if leader.h.Network().Connectedness(id) == network.Connected {
			return errors.New("still connected")
		}
		return nil
	})
	// Long away: the tries backed off to MemberIdle.
	leader.r.readmit.mu.Lock()
	tr := leader.r.readmit.next[id]
	tr.wait, tr.at = idle, time.Now().Add(idle)
	leader.r.readmit.next[id] = tr
	leader.r.readmit.mu.Unlock()

	gone.open() // the same key and raft data, a new port
	// The leader's own dial is no news of the node: it leaves the backoff
	// alone. (A connection's Disconnected is delivered after its Connected.)
	closed := make(chan struct{})
	var once sync.Once
	watch := &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == id && c.Stat().Direction == network.DirOutbound {
			once.Do(func() { close(closed) })
		}
	}}
	leader.h.Network().Notify(watch)
	if err := leader.h.Connect(ctxT(t, testDeadline), peer.AddrInfo{ID: id, Addrs: gone.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	_ = leader.h.Network().ClosePeer(id)
	select {
	case <-closed:
	case <-time.After(testDeadline):
		t.Fatal("the leader's connection to the node did not close")
	}
	leader.h.Network().StopNotify(watch)
	leader.r.readmit.mu.Lock()
	at := leader.r.readmit.next[id].at
	leader.r.readmit.mu.Unlock()
	if time.Until(at) < idle/2 {
		t.Fatalf("the leader's own dial reset the node's backoff: next try in %v", time.Until(at))
	}
	waitUntil(t, testDeadline, "the node sees the leader's connection closed", func() error {
		if gone.h.Network().Connectedness(leader.h.ID()) == network.Connected {
			return errors.New("still connected")
		}
		return nil
	})
	leader.h.Peerstore().ClearAddrs(id) // and the leader forgot its addresses

	if err := gone.h.Connect(ctxT(t, testDeadline), peer.AddrInfo{ID: leader.h.ID(), Addrs: leader.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	gone.run()
	start := time.Now()
	waitUntil(t, idle/3, "the leader adds the connected node back, well before MemberIdle", func() error {
		if !leader.r.hasServer(id) {
			return errors.New("not a server of the leader's configuration")
		}
		return nil
	})
	t.Logf("a server again %v after it connected (MemberPoll %v, MemberIdle %v)", time.Since(start).Round(time.Millisecond), leader.r.t.MemberPoll, idle)
	waitReadmitted(t, nodes, gone, "after-wake")
}

// TestReadmitWakeBounded: a connection resets a node's backoff, but a node
// that connects again and again is tried at most once every gap, and one
// timer per gap wakes the loop for it.
func TestReadmitWakeBounded(t *testing.T) {
	const first, most, gap = time.Second, 15 * time.Second, time.Second
	p, q := peer.ID("p"), peer.ID("q")
	t0 := time.Unix(1_000_000, 0)
	var s readmitState
	if got := s.due([]peer.ID{p}, t0, first, most); len(got) != 1 {
		t.Fatalf("first round: %v", got)
	}
	s.next[p] = readmitTry{at: t0.Add(most), wait: most, last: t0} // backed off
	if _, _, ok := s.wake(q, t0, gap); ok {
		t.Fatal("a node that is not in the schedule was woken")
	}
	for i := 1; i <= 9; i++ {
		at, arm, ok := s.wake(p, t0.Add(time.Duration(i)*gap/10), gap)
		if !ok || !at.Equal(t0.Add(gap)) || arm != (i == 1) {
			t.Fatalf("wake %d within the gap: at %v (want %v), arm %v, ok %v", i, at.Sub(t0), gap, arm, ok)
		}
		if got := s.due([]peer.ID{p}, t0.Add(time.Duration(i)*gap/10), first, most); len(got) != 0 {
			t.Fatalf("tried again %v after the last try", time.Duration(i)*gap/10)
		}
	}
	t1 := t0.Add(gap)
	if got := s.due([]peer.ID{p}, t1, first, most); len(got) != 1 {
		t.Fatal("not tried once the gap passed")
	}
	if tr := s.next[p]; tr.wait != first || !tr.at.Equal(t1.Add(first)) {
		t.Fatalf("the backoff was not reset: wait %v, next try %v after", tr.wait, tr.at.Sub(t1))
	}
	at, arm, ok := s.wake(p, t1.Add(2*gap), gap)
	if !ok || !at.Equal(t1.Add(2*gap)) || arm {
		t.Fatalf("a wake after the gap: at %v, arm %v, ok %v; want now, no timer", at.Sub(t1), arm, ok)
	}
}

// otherThanAll returns nodes without the ones in skip.
func otherThanAll(nodes []*testNode, skip ...*testNode) []*testNode {
	var out []*testNode
	for _, o := range nodes {
		if !slices.Contains(skip, o) {
			out = append(out, o)
		}
	}
	return out
}
