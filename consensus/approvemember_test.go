package consensus

import (
	"errors"
	"testing"
	"time"
)

// Test_Security_ApproveMemberByFingerprint: approving by its fingerprint a node admitted already
// answers as approving it by its peer ID does: nothing to change for the same role, ErrConflict
// (409) for the other, as docs/api.md says of the approve route, whose body names a fingerprint.
// And a stranger waiting with a key ground to a member's fingerprint is refused as ambiguous, not
// approved. Before, the fingerprint was looked up among waiting and removed nodes only: the
// member's answered "no such node" (404), and the stranger was the one approved.
func Test_Security_ApproveMemberByFingerprint(t *testing.T) {
	n := oneNodeCluster(t, "sec-approve-member")
	a := newPeerID(t)
	fp := Fingerprint(a)
	ctx := ctxT(t, 30*time.Second)
	n.r.pending.add(PendingNode{ID: a.String(), Name: "a", Fingerprint: fp}, time.Now())
	if _, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); err != nil || n.r.roleOf(a) != RoleMember {
		t.Fatalf("approve: %v, role %q", err, n.r.roleOf(a))
	}
	if p, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); err != nil || p != a {
		t.Errorf("approving a member again by its fingerprint: %s, %v; want %s and no error", p, err, a)
	}
	if _, err := n.r.Approve(ctx, fp, RoleWorker, testAdminToken); !errors.Is(err, ErrConflict) {
		t.Errorf("approving a member as a worker by its fingerprint: %v, want ErrConflict", err)
	}
	b := newPeerID(t)
	n.r.pending.add(PendingNode{ID: b.String(), Name: "b", Fingerprint: fp}, time.Now())
	if p, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); !errors.Is(err, ErrInvalid) {
		t.Errorf("approving a fingerprint a member and a waiting stranger share: %s, %v; want refused as ambiguous", p, err)
	}
	if r := n.r.roleOf(b); r != "" {
		t.Fatalf("the stranger with the member's fingerprint was admitted as a %s", r)
	}
	if r := n.r.roleOf(a); r != RoleMember {
		t.Fatalf("the member's role is %q, want member", r)
	}
}
