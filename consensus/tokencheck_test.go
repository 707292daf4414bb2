package consensus

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Test_TokenAdd_ProposerValidatesTheEntry: a join token entry is validated whole where it is
// proposed (ApplyAs, and the leader's check of a forwarded proposal): a key that is not hex, no
// cluster key, uses or an expiry out of bounds, uses already spent, no creation time or an ID in
// use are refused before anything is committed, though apply still accepts such an entry as
// every older build does (a replica refusing it would diverge from them). A retry of a committed
// entry passes.
func Test_TokenAdd_ProposerValidatesTheEntry(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "token-check")
	cid := n.r.State().ClusterID
	now := time.Now().UTC()
	newTok := func() (string, JoinToken) {
		id, _, rec := NewJoinToken(cid)
		rec.Role, rec.Created, rec.Expires = RoleWorker, now, now.Add(time.Hour)
		return id, rec
	}
	// A member other than this node, whose proposals the leader checks in authorize.
	other, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	madd, _ := NewCommand(OpMemberAdd, MemberAdd{ID: other.String(), Role: RoleMember, At: now})
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), madd, testAdminToken); err != nil {
		t.Fatal(err)
	}

	goodID, good := newTok()
	cmd, _ := NewCommand(OpTokenAdd, TokenAdd{ID: goodID, Token: good})
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	// A retry of the same entry (raft's answer was lost) passes.
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatalf("the same token again: %v", err)
	}

	for _, c := range []struct {
		name string
		mod  func(id *string, tok *JoinToken)
		kind error
	}{
		{"key not hex", func(_ *string, tok *JoinToken) { tok.Key = strings.Repeat("zz", 32) }, ErrInvalid},
		{"no cluster key", func(_ *string, tok *JoinToken) { tok.ClusterKey = "" }, ErrInvalid},
		{"role", func(_ *string, tok *JoinToken) { tok.Role = RoleAdmin }, ErrInvalid},
		{"ID", func(id *string, _ *JoinToken) { *id = "Bad ID" }, ErrInvalid},
		{"uses", func(_ *string, tok *JoinToken) { tok.Uses = MaxTokenUses + 1 }, ErrInvalid},
		{"used", func(_ *string, tok *JoinToken) { tok.Used = 3 }, ErrInvalid},
		{"no creation time", func(_ *string, tok *JoinToken) { tok.Created = time.Time{} }, ErrInvalid},
		{"expired at creation", func(_ *string, tok *JoinToken) { tok.Expires = tok.Created.Add(-time.Second) }, ErrInvalid},
		{"ttl", func(_ *string, tok *JoinToken) { tok.Expires = tok.Created.Add(MaxTokenTTL + time.Hour) }, ErrInvalid},
		{"duplicate ID", func(id *string, _ *JoinToken) { *id = goodID }, ErrConflict},
	} {
		id, tok := newTok()
		c.mod(&id, &tok)
		cmd, err := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); !errors.Is(err, ErrRejected) || !errors.Is(err, c.kind) {
			t.Errorf("%s: ApplyAs: %v, want %v", c.name, err, c.kind)
		}
		data, _ := EncodeCommand(cmd)
		if err := n.r.authorize(other, data, testAdminToken); !errors.Is(err, c.kind) {
			t.Errorf("%s: the leader's check of a forwarded proposal: %v, want %v", c.name, err, c.kind)
		}
		if got := n.r.State().JoinTokens[id]; id != goodID && got.Key != "" {
			t.Errorf("%s: a refused token was committed: %+v", c.name, got)
		}
		if id == goodID && n.r.State().JoinTokens[id].Key != good.Key {
			t.Errorf("%s: the existing token was replaced", c.name)
		}
	}

	// Apply's outcome is unchanged: an entry with a key of the right length that is not hex
	// is still applied (an older replica replaying the log accepts it).
	id, tok := newTok()
	tok.Key = strings.Repeat("zz", 32)
	payload, _ := json.Marshal(TokenAdd{ID: id, Token: tok})
	var st ClusterState
	if res := applyMembership(&st, OpTokenAdd, payload); res != nil {
		t.Fatalf("apply of a non-hex key: %v, want accepted as before", res)
	}
}
