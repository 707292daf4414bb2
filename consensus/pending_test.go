package consensus

import (
	"errors"
	"testing"
)

// TestPendingOnEveryMember: a node waiting for approval that found only one
// member (--join, no mDNS) shows up on every member's pending list, and an
// admin approves it on a member it never dialled itself (docs/security.md:
// "shows up in every member's web UI", "hydra approve … on any member").
// A member's info answer lists the other servers, and the joiner asks them
// all, as it asks every member mDNS found.
func TestPendingOnEveryMember(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, "pending-all", nil)
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	cmd, err := NewCommand(OpAdmit, AdmitMode{Mode: AdmitApproval})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, testDeadline, "the follower applies the approval mode", func() error {
		if follower.r.State().AdmitMode() != AdmitApproval {
			return errors.New("not yet")
		}
		return nil
	})

	p := newTestNode(t, "plain", "pending-all", func(c *Config) { c.Admit, c.NodeToken = "", "plain-token" })
	connectAll(t, []*testNode{leader, p}) // the joiner knows the leader only
	p.run()
	fp := Fingerprint(p.h.ID())
	waitUntil(t, testDeadline, "the joiner is pending on the member it never found", func() error {
		for _, pn := range follower.r.Pending() {
			if pn.ID == p.h.ID().String() && pn.Fingerprint == fp {
				return nil
			}
		}
		return errors.New("not pending there")
	})
	if leader.r.hasServer(p.h.ID()) || p.r.Role() != "" {
		t.Fatal("an unapproved node joined")
	}
	if _, err := follower.r.Approve(ctxT(t, testDeadline), fp, "", testAdminToken); err != nil {
		t.Fatalf("approve on the other member: %v", err)
	}
	waitUntil(t, testDeadline, "the approved node joins", func() error {
		if !leader.r.hasServer(p.h.ID()) || p.r.Role() != RoleMember || !p.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
}
