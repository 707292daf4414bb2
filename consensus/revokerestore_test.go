package consensus

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// A replica that learns of a revocation from a snapshot (it was down, or new, while the leader
// compacted the entry away) refuses the revoked node as one that applied the entry does: OnRefuse
// (p2p.Host.Refuse, which closes its connections) is called for it, once. Before, Restore only
// published the allow-list: the evicted node's open connections to that replica stayed up, and
// the replica's gossip went on reaching it.
func TestRestoredRevocationIsRefused(t *testing.T) {
	snap := func(revoke ...string) []byte {
		src := NewFSM(nil)
		apply(src, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
		apply(src, 2, mustCmd(t, OpMemberRemove, MemberRemove{ID: "left"})) // removed, not revoked
		for i, id := range revoke {
			if res := apply(src, uint64(3+i), mustCmd(t, OpMemberRemove, MemberRemove{ID: id, Revoke: true})); res != nil {
				t.Fatalf("revoke %s: %v", id, res)
			}
		}
		return snapshotBytes(t, src)
	}
	f := NewFSM(nil)
	refused := make(chan string, 8)
	f.onRevoke = func(id string) { refused <- id }
	restore := func(data []byte) {
		t.Helper()
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case id := <-refused:
			return id
		case <-time.After(testDeadline):
			t.Fatal("no peer refused after the restore")
			return ""
		}
	}
	restore(snap("gone"))
	if id := next(); id != "gone" {
		t.Fatalf("refused %q, want the revoked node", id)
	}
	// A snapshot whose revocations this replica holds already refuses nobody again; a later
	// one refuses only the node it newly revoked.
	restore(snap("gone"))
	restore(snap("gone", "later"))
	if id := next(); id != "later" {
		t.Fatalf("refused %q, want only the newly revoked node", id)
	}
	if _, revoked := f.peerRole("later"); !revoked {
		t.Fatal("the restored allow-list does not refuse the revoked node")
	}
}
