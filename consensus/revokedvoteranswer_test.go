package consensus

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Test_Security_AnswerNamesNoRevokedVoter: a joiner admitted while a removed
// voter has not left the configuration yet (its removal waits for a quorum)
// is not told to take raft RPCs from that voter: the answer's peers stand
// over the joiner's replica, revocations included, until it has caught up,
// so a revoked key named there would be a member on the joiner meanwhile
// (its gater, its protocols, its raft transport).
func Test_Security_AnswerNamesNoRevokedVoter(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "answer-revoked", nil)
	leader := settled(t, nodes, 3, false)
	v := otherThan(nodes, leader)
	evictHeld(t, leader, v)

	j := newTestNode(t, "joiner", "answer-revoked", nil)
	var mu sync.Mutex
	var answers []membershipResponse
	hook := func(_ peer.ID, resp membershipResponse) error {
		mu.Lock()
		defer mu.Unlock()
		answers = append(answers, resp)
		return nil
	}
	j.r.answerHook.Store(&hook)
	connectAll(t, append(slices.DeleteFunc(slices.Clone(nodes), func(n *testNode) bool { return n == v }), j))
	j.run()
	waitUntil(t, testDeadline, "the joiner admitted and answered", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range answers {
			if !a.Pending && a.Leader != "" {
				return nil
			}
		}
		return errors.New("no admission answer yet")
	})
	mu.Lock()
	defer mu.Unlock()
	for _, a := range answers {
		if slices.Contains(a.Servers, v.h.ID().String()) || a.Leader == v.h.ID().String() {
			t.Fatalf("the admission answer names the revoked voter %s: %+v (the joiner's access to it: %v)", v.name, a, j.r.Access(v.h.ID()) == p2p.AccessMember)
		}
	}
}
