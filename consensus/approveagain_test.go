package consensus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
)

// Test_Security_ApproveRemovedByFingerprint: a node evicted by its
// fingerprint (hydra remove FP, or denied: hydra deny FP) is approved again
// by the same fingerprint, as docs/security.md says. Its key is refused on
// every transport, so it never waits for approval again, and the fingerprint
// was resolved among waiting nodes only: "no such node" (404), and only its
// peer ID worked. A stranger waiting with a key ground to the same
// fingerprint makes it ambiguous (refused, as between two waiting nodes); a
// fingerprint matches only a revoked node for approve, never for deny.
func Test_Security_ApproveRemovedByFingerprint(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-approve-again")
	a := newPeerID(t)
	fp := Fingerprint(a)
	ctx := ctxT(t, 30*time.Second)
	n.r.pending.add(PendingNode{ID: a.String(), Name: "a", Fingerprint: fp}, time.Now())
	if _, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); err != nil || n.r.roleOf(a) != RoleMember {
		t.Fatalf("approve: %v, role %q", err, n.r.roleOf(a))
	}
	if err := n.r.Evict(ctx, a, testAdminToken); err != nil || n.r.Access(a) != p2p.AccessRefused {
		t.Fatalf("evict: %v, access %v", err, n.r.Access(a))
	}
	if p, err := n.r.Deny(ctx, fp, testAdminToken); err == nil {
		t.Errorf("deny by the fingerprint of a node no longer waiting acted on %s", p)
	}

	// A stranger waits with a key ground to the removed node's fingerprint: ambiguous.
	b := newPeerID(t)
	n.r.pending.add(PendingNode{ID: b.String(), Name: "b", Fingerprint: fp}, time.Now())
	if p, err := n.r.Approve(ctx, fp, RoleMember, testAdminToken); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("approving a fingerprint a removed node and a waiting stranger share: %s, %v; want refused as ambiguous", p, err)
	}
	if n.r.roleOf(a) != "" || n.r.roleOf(b) != "" {
		t.Fatalf("roles %q and %q after an ambiguous approve", n.r.roleOf(a), n.r.roleOf(b))
	}
	n.r.pending.remove(b)

	p, err := n.r.Approve(ctx, strings.ToLower(fp), RoleWorker, testAdminToken)
	if err != nil || p != a {
		t.Fatalf("approving a removed node by its fingerprint: %s, %v; want %s", p, err, a)
	}
	if n.r.roleOf(a) != RoleWorker || n.r.Access(a) == p2p.AccessRefused {
		t.Fatalf("after approving again: role %q, access %v; want worker, not refused", n.r.roleOf(a), n.r.Access(a))
	}
	if _, err := n.r.Approve(ctx, Fingerprint(newPeerID(t)), RoleMember, testAdminToken); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("a fingerprint of no node: %v, want ErrNoSuchNode", err)
	}
}
