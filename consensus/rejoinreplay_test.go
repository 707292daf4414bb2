package consensus

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestRejoinerTrustsItsAnswerThroughTheLeadersPast: a node that left and joins again with a
// fresh raft state replays the cluster's log from its start. At the indexes where the current
// leader had left (and was not yet approved again) its replica's allow-list did not hold the
// leader, and its own earlier membership, replayed, had made it forget its admission answer:
// it refused the leader's raft RPCs for good and never caught up (the chaos harness, seed 29:
// with a third voter lost, the cluster had no leader any more). The answer now names the index
// its leader had applied, and the joiner trusts it until its replica is that far.
func TestRejoinerTrustsItsAnswerThroughTheLeadersPast(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "rejoin-stale", nil)
	leader := settled(t, nodes, 3, true)
	rest := otherThanAll(nodes, leader)
	l, x := rest[0], rest[1]
	// L leaves and joins again (fresh raft state, same key).
	if err := l.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	l.kill()
	out := settled(t, otherThanAll(nodes, l), 2, true)
	// Enough entries while L is out that a replay of them takes more than one AppendEntries.
	for i := range 300 {
		registerFake(t, out, fmt.Sprint(i))
	}
	l.restart(otherThanAll(nodes, l))
	// L leads.
	cur := settled(t, nodes, 3, false)
	handLeadership(t, cur, l)
	// X leaves and joins again: its replay passes the index where L had left.
	if err := x.r.Leave(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	x.kill()
	settled(t, otherThanAll(nodes, x), 2, false)
	x.restart(otherThanAll(nodes, x))
	waitUntil(t, testDeadline, "X caught up with L's log", func() error {
		if a, b := x.r.AppliedIndex(), l.r.AppliedIndex(); a+2 < b {
			return fmt.Errorf("X applied %d, L %d", a, b)
		}
		if _, ok := x.r.State().Nodes[l.h.ID().String()]; !ok {
			return fmt.Errorf("X's replica does not list L")
		}
		return nil
	})
}

// TestJoinerTrustsItsAnswerOverAPastRevocation: a fresh node joins a cluster whose leader was
// once removed (its key revoked) and approved again. Replaying the log, the joiner's replica
// holds the leader's key as revoked from the removal to the approval: it refused the leader
// there, closed its connections and never received the approval beyond (the chaos harness,
// seed 43: a replaced disk's node restored a snapshot taken in between and stayed without a
// leader for good). The admission answer's leader now counts as a member until the replica has
// applied what the answer's leader had, revoked or not in the history on the way.
func TestJoinerTrustsItsAnswerOverAPastRevocation(t *testing.T) {
	t.Parallel()
	nodes, gone := leaderOnceRevoked(t, "join-past-revoked")
	j := newTestNode(t, "joiner", "join-past-revoked", nil)
	connectAll(t, append([]*testNode{j}, nodes...))
	j.run()
	waitCaughtUpWith(t, j, gone)
}

// TestJoinerKeepsItsLeaderThroughARevocationBeforeTheAnswer: as above, but the joiner's replay
// passes the leader's past revocation while its join call is still in flight (the leader adds it,
// replicates to it, and only then answers; an approval given while the call waits does the
// same). Applying the revocation closed the joiner's connections to the leader (OnRefuse): the
// call failed, the trust it carried went with it, the replica refused the leader's raft RPCs
// where it stood, and the node never had a leader (the chaos harness, seed 107: a replaced
// disk's node approved through the node it joined). A revocation closes connections only to a
// peer Access refuses at that moment.
func TestJoinerKeepsItsLeaderThroughARevocationBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	const cluster = "join-revoked-inflight"
	_, gone := leaderOnceRevoked(t, cluster)
	j := refusingJoiner(t, cluster)
	// The leader holds its answer until the joiner's replica is at its own entry, or the joiner
	// has closed its connection to the leader.
	hold := func(where string, p peer.ID) {
		if where != "added" || p != j.h.ID() {
			return
		}
		deadline := time.Now().Add(testDeadline / 2)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for time.Now().Before(deadline) && j.r.Role() != RoleMember && j.h.Network().Connectedness(gone.h.ID()) == network.Connected {
			<-tick.C
		}
	}
	gone.r.gapHook.Store(&hold)
	connectAll(t, []*testNode{j, gone}) // it joins through the leader, the one member it knows
	j.run()
	waitCaughtUpWith(t, j, gone)
}

// TestJoinerKeepsItsLeaderWhenTheAnswerIsLostMidReplay: the joiner's answer is lost (the call
// fails) while its replica, fed by the leader that added it, stands at the leader's past
// revocation. The call's trust in the leader went with the call, the replica refused the
// leader's raft RPCs there, and the node never had a leader. The trust now stands as an answer
// without an index does, until the replica holds the joiner's own entry.
func TestJoinerKeepsItsLeaderWhenTheAnswerIsLostMidReplay(t *testing.T) {
	t.Parallel()
	const cluster = "join-answer-lost"
	_, gone := leaderOnceRevoked(t, cluster)
	j := refusingJoiner(t, cluster)
	leader := gone.h.ID()
	atRevocation, lost := make(chan struct{}), make(chan struct{})
	var pause, lose sync.Once
	onIndex := j.r.fsm.onIndex
	j.r.fsm.onIndex = func(i uint64) { // the replica stops at the revocation until the answer is lost
		onIndex(i)
		if _, revoked := j.r.fsm.peerRole(leader.String()); revoked {
			pause.Do(func() {
				close(atRevocation)
				select {
				case <-lost:
				case <-time.After(testDeadline / 2):
				}
			})
		}
	}
	hook := func(via peer.ID, resp membershipResponse) error {
		err := errors.New("the answer was lost on its way")
		lose.Do(func() {
			select {
			case <-atRevocation:
			case <-time.After(testDeadline / 2):
			}
			go func() { // once the failed call is handled, the replica goes on
				defer close(lost)
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for deadline := time.Now().Add(testDeadline / 2); time.Now().Before(deadline); <-tick.C {
					if v, ok := j.r.expected.Load(leader); !ok || v == true {
						return
					}
				}
			}()
		})
		return err
	}
	j.r.answerHook.Store(&hook)
	connectAll(t, []*testNode{j, gone})
	j.run()
	waitCaughtUpWith(t, j, gone)
}

// refusingJoiner is a fresh node of cluster (not running) that closes its connections to a
// peer it refuses, as node wires OnRefuse to p2p.Host.Refuse.
func refusingJoiner(t *testing.T, cluster string) *testNode {
	var j *testNode
	j = newTestNode(t, "joiner", cluster, func(c *Config) {
		c.OnRefuse = func(p peer.ID) { _ = j.h.Network().ClosePeer(p) }
	})
	return j
}

// leaderOnceRevoked makes a 3-node cluster whose leader was removed (its key revoked) and
// approved again, with 300 entries between the two, so that a joiner's replay cannot take the
// approval in the same AppendEntries as the revocation.
func leaderOnceRevoked(t *testing.T, cluster string) (nodes []*testNode, leader *testNode) {
	t.Helper()
	nodes, first, gone := evictMember(t, cluster, nil)
	for i := range 300 {
		registerFake(t, first, fmt.Sprint(i))
	}
	if _, err := first.r.Approve(ctxT(t, testDeadline), gone.h.ID().String(), RoleMember, testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitReadmitted(t, nodes, gone, "readmitted")
	waitUntil(t, testDeadline, "the readmitted node holds a vote again", func() error {
		l, err := agreed(nodes)
		if err != nil {
			return err
		}
		for _, s := range l.r.Servers() {
			if s.ID == gone.h.ID() && s.Voter {
				return nil
			}
		}
		return fmt.Errorf("%s is not a voter of %s's configuration", gone.name, l.name)
	})
	handLeadership(t, waitAgreed(t, nodes), gone)
	return nodes, gone
}

// waitCaughtUpWith waits until j's replica is about as far as leader's, j is a member there and
// so is leader.
func waitCaughtUpWith(t *testing.T, j, leader *testNode) {
	t.Helper()
	waitUntil(t, testDeadline, "the joiner caught up with the leader once removed", func() error {
		if a, b := j.r.AppliedIndex(), leader.r.AppliedIndex(); a+2 < b {
			return fmt.Errorf("the joiner applied %d, the leader %d", a, b)
		}
		if j.r.Role() != RoleMember || j.r.roleOf(leader.h.ID()) != RoleMember {
			return fmt.Errorf("the joiner's role %q, the leader's role in its replica %q", j.r.Role(), j.r.roleOf(leader.h.ID()))
		}
		return nil
	})
}
