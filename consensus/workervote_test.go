package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// Test_Security_EvictedVoterApprovedAsWorkerWaits: a voter evicted (hydra remove) and approved
// again as a worker (hydra approve --role worker, what the refusal of approving a member as a
// worker tells the admin to do) before its removal from the configuration is done is refused
// (ErrConflict, the API's 409), on the leader and forwarded through a follower alike, and is
// approved once it has left. Before, the approval committed: the key was a worker's, not revoked
// any more, so the removal never came (reconcileMembers removes revoked keys only), and the
// promoter kept it among the voters while short of fit ones (VoterNever voters fill the set): a
// worker held a raft vote and counted in every commit's quorum.
func Test_Security_EvictedVoterApprovedAsWorkerWaits(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "worker-vote", nil)
	leader := settled(t, nodes, 3, true)
	rest := otherThanAll(nodes, leader)
	v, other := rest[0], rest[1]
	vid := v.h.ID()

	release := evictHeld(t, leader, v)
	_, err := leader.r.Approve(ctxT(t, testDeadline), vid.String(), RoleWorker, testAdminToken)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("approving the evicted voter %s as a worker while it votes: %v, want ErrConflict", v.name, err)
	}
	if role := leader.r.roleOf(vid); role == RoleWorker || !leader.r.votes(vid) {
		t.Fatalf("after the refused approval %s is a %q (voter %v)", v.name, role, leader.r.votes(vid))
	}
	waitUntil(t, testDeadline, other.name+" applies the eviction", func() error {
		if _, revoked := other.r.fsm.peerRole(vid.String()); !revoked {
			return errors.New("not revoked there yet")
		}
		return nil
	})
	if _, err := other.r.Approve(ctxT(t, testDeadline), vid.String(), RoleWorker, testAdminToken); !errors.Is(err, ErrConflict) {
		t.Fatalf("approving %s as a worker through %s while it votes: %v, want ErrConflict", v.name, other.name, err)
	}
	if role := leader.r.roleOf(vid); role != "" {
		t.Fatalf("after the refused approvals %s is a %q", v.name, role)
	}

	release()
	waitUntil(t, testDeadline, v.name+" leaves the configuration", func() error {
		if leader.r.hasServer(vid) {
			return fmt.Errorf("%s is still a server", v.name)
		}
		return nil
	})
	if _, err := leader.r.Approve(ctxT(t, testDeadline), vid.String(), RoleWorker, testAdminToken); err != nil {
		t.Fatalf("approving %s as a worker once it has left: %v", v.name, err)
	}
	if role := leader.r.roleOf(vid); role != RoleWorker {
		t.Fatalf("%s approved as a worker is a %q", v.name, role)
	}
}

// TestAutopilotNeverPromotesAWorker: autopilot's promotion of a server that is a worker is
// refused (apRaft.AddVoter), as that of a revoked key is. Autopilot decides from a state read
// before it makes the change: a member non-voter it chose, evicted and approved again as a worker
// meanwhile (a non-voter: nothing waits), was given a vote, for the check looked at the
// revocation alone. Here the promotion is asked of a worker directly, as such a stale decision
// asks it.
func TestAutopilotNeverPromotesAWorker(t *testing.T) {
	t.Parallel()
	a, w := founderAndWorker(t, "ap-worker")
	waitUntil(t, testDeadline, "the worker is a server", func() error {
		if !a.r.hasServer(w.h.ID()) || a.r.roleOf(w.h.ID()) != RoleWorker {
			return errors.New("not a worker server yet")
		}
		return nil
	})
	wid := raft.ServerID(w.h.ID().String())
	ap := apRaft{Raft: a.r.raft, r: a.r}
	if err := ap.AddVoter(wid, raft.ServerAddress(wid), 0, 0).Error(); !errors.Is(err, ErrConflict) {
		t.Fatalf("autopilot's promotion of a worker: %v, want ErrConflict", err)
	}
	if a.r.votes(w.h.ID()) {
		t.Fatal("the worker holds a vote")
	}
}
