package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/consensus"
)

// TestApprovedNodeSeesTheMembersOnlineAtOnce: a node just approved listed the other members
// offline in its own status until each one's next announcement: the announcements it heard while
// it waited were dropped (their authors were not members yet in its eyes), and an idle member
// announces only every idleAnnounceEvery. The members answer a newcomer's first announcements at
// once now. AnnounceInterval is long here (an idle member announced every 20 s), so that the
// old behaviour misses the deadline, a quarter of it, all but always (each of the three members
// would have to announce within it), while the new one meets it with seconds to spare on a
// loaded machine (0.2 to 0.9 s on a quiet one: a member still working that answered another
// less than a promptGap before answers the newcomer once the gap has passed). The members show
// the newcomer online as soon.
func TestApprovedNodeSeesTheMembersOnlineAtOnce(t *testing.T) {
	const interval = 20 * time.Second
	deadline := interval / 4
	long := func(c *Config) { c.AnnounceInterval = interval }
	nodes := startClusterWith(t, 3, long)
	leader := waitLeader(t, nodes, 30*time.Second)
	tok := activeAdminToken(t, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := leader.SetAdmit(ctx, consensus.AdmitApproval, tok); err != nil {
		t.Fatalf("admit approval: %v", err)
	}
	waitFor(t, 30*time.Second, "every member in approval mode", func() error {
		for _, n := range nodes {
			if m := n.raft.State().AdmitMode(); m != consensus.AdmitApproval {
				return fmt.Errorf("%s: admission mode %q", n.cfg.Name, m)
			}
		}
		return nil
	})

	waitFor(t, 30*time.Second, "the members online in each other's status", func() error {
		for _, n := range nodes {
			if err := showsOnline(n, nodes); err != nil {
				return err
			}
		}
		return nil
	})

	newcomer := newTestNode(t, t.TempDir(), "newcomer", long)
	connectAll(t, append(append([]*testNode{}, nodes...), newcomer))
	newcomer.start(t)
	waitFor(t, 30*time.Second, "the newcomer waiting for approval", func() error {
		for _, p := range leader.raft.Pending() {
			if p.ID == newcomer.ID().String() {
				return nil
			}
		}
		return errors.New("not pending at the leader")
	})
	// While the newcomer waits, the members' announcements reach it and are dropped: it shows none
	// of them online, as it must not show a node it has not heard from as a member.
	for _, ns := range newcomer.Status().Nodes {
		if ns.Online && ns.ID != newcomer.ID().String() {
			t.Fatalf("waiting for approval, the newcomer shows %s (%s) online", ns.Name, ns.ID)
		}
	}
	approved := time.Now()
	if _, err := leader.Approve(ctx, newcomer.ID().String(), "", tok); err != nil {
		t.Fatalf("approve: %v", err)
	}
	var admitted time.Duration
	offline := func() error {
		if admitted == 0 && newcomer.raft.Role() != "" {
			admitted = time.Since(approved)
		}
		return showsOnline(newcomer, nodes)
	}
	// Waited for well past the deadline, to measure the time it took.
	waitFor(t, 2*offlineAfter(interval), "every member online in the newcomer's status", offline)
	took := time.Since(approved)
	t.Logf("approved → admitted %v, → every member online in its status %v (deadline %v)", admitted, took, deadline)
	if took > deadline {
		t.Fatalf("the newcomer showed every member online %v after its approval, want within %v (AnnounceInterval %v)", took, deadline, interval)
	}
	// And the members show the newcomer online within the same deadline: its hellos (one a
	// second, the first ones it sends as a member) reach them, not its next announcement at the
	// interval. A member that had not applied the approval yet when the first hello came drops it
	// and takes the next.
	waitFor(t, 2*offlineAfter(interval), "the newcomer online in every member's status", func() error {
		for _, n := range nodes {
			if err := showsOnline(n, []*testNode{newcomer}); err != nil {
				return err
			}
		}
		return nil
	})
	took = time.Since(approved)
	t.Logf("approved → the newcomer online in every member's status %v", took)
	if took > deadline {
		t.Fatalf("the members showed the newcomer online %v after its approval, want within %v (AnnounceInterval %v)", took, deadline, interval)
	}
}

// showsOnline reports an error unless n's status shows every node of nodes online.
func showsOnline(n *testNode, nodes []*testNode) error {
	online := map[string]bool{}
	for _, ns := range n.Status().Nodes {
		online[ns.ID] = ns.Online
	}
	for _, m := range nodes {
		if !online[m.ID().String()] {
			return fmt.Errorf("%s shows %s offline", n.cfg.Name, m.cfg.Name)
		}
	}
	return nil
}
