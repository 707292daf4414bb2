package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/hydra-compute/hydra/p2p"
)

// fakeCluster is a stranger on the LAN that claims the ID of a real
// cluster (info tells it to anyone) and answers joins itself, as that
// cluster's leader. answer makes its answer to each request; the default
// names the fake alone and proves nothing, as a plain impostor would.
type fakeCluster struct {
	h      host.Host
	mu     sync.Mutex
	reqs   []membershipRequest
	answer func(req membershipRequest) membershipResponse
	// trusted: while a request was in flight, the joiner let the fake
	// send it raft RPCs (it could have installed a state of its own).
	trusted bool
}

func newFakeCluster(t *testing.T, cluster, cid string, joiner *testNode) *fakeCluster {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	f := &fakeCluster{h: h}
	f.answer = func(membershipRequest) membershipResponse {
		return membershipResponse{Changed: true, Leader: h.ID().String(), Servers: []string{h.ID().String()}}
	}
	log := testLogger().With("node", "fake")
	p2p.Serve(h, ProtocolInfo, 8<<10, 10*time.Second, log, func(context.Context, peer.ID, json.RawMessage) (any, error) {
		return infoResponse{Cluster: cluster, InCluster: true, ClusterID: cid, Leader: h.ID().String()}, nil
	})
	p2p.Serve(h, ProtocolJoin, 8<<10, 10*time.Second, log, func(_ context.Context, from peer.ID, raw json.RawMessage) (any, error) {
		var req membershipRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reqs = append(f.reqs, req)
		if joiner.r.mayRaft(h.ID()) {
			f.trusted = true
		}
		return f.answer(req), nil
	})
	h.Peerstore().AddAddrs(joiner.h.ID(), joiner.h.Addrs(), peerstore.PermanentAddrTTL)
	if err := h.Connect(ctxT(t, 10*time.Second), peer.AddrInfo{ID: joiner.h.ID(), Addrs: joiner.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	joiner.h.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.PermanentAddrTTL)
	joiner.r.PeerFound(h.ID())
	return f
}

func (f *fakeCluster) requests() []membershipRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]membershipRequest(nil), f.reqs...)
}

// addJoinToken makes a join token for role on n's cluster and returns its
// ID, secret and replicated record.
func addJoinToken(t *testing.T, n *testNode, role string) (string, string, JoinToken) {
	t.Helper()
	id, secret, rec := NewJoinToken(n.r.State().ClusterID)
	rec.Role, rec.Created = role, time.Now().UTC()
	cmd, err := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	if got := n.r.State().JoinTokens[id]; got.ClusterKey != rec.ClusterKey || got.ClusterKey == "" {
		t.Fatalf("replicated token %+v has not the cluster key", got)
	}
	return id, secret, rec
}

// Test_Security_TokenJoinerRefusesFakeCluster: a peer that claims the real
// cluster's ID and answers a token joiner's request itself (a stranger on
// the LAN) is never trusted by it, neither after its answer nor while the
// request is in flight; the joiner then joins the real cluster with the
// same token.
func Test_Security_TokenJoinerRefusesFakeCluster(t *testing.T) {
	t.Parallel()
	a := oneNodeCluster(t, "sec-fake")
	cid := a.r.State().ClusterID
	_, secret, _ := addJoinToken(t, a, RoleMember)
	j := newTestNode(t, "joiner", "sec-fake", func(c *Config) { c.JoinToken, c.Admit, c.NodeToken = secret, "", "joiner-token" })
	f := newFakeCluster(t, "sec-fake", cid, j)
	j.run()
	waitUntil(t, testDeadline, "the joiner asks the fake cluster twice", func() error {
		if n := len(f.requests()); n < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	for _, req := range f.requests() {
		if len(req.Nonce) != maxNonceLen || req.TokenID == "" {
			t.Fatalf("token join request without a nonce: %+v", req)
		}
	}
	f.mu.Lock()
	trusted := f.trusted
	f.mu.Unlock()
	if trusted || j.r.mayRaft(f.h.ID()) || j.r.Access(f.h.ID()) == p2p.AccessMember || j.r.inCluster() {
		t.Fatalf("the token joiner trusts the fake cluster (in flight %v, access %v, in a cluster %v)", trusted, j.r.Access(f.h.ID()), j.r.inCluster())
	}

	connectAll(t, []*testNode{a, j})
	waitUntil(t, testDeadline, "the joiner joins the real cluster", func() error {
		if !a.r.hasServer(j.h.ID()) || j.r.Role() != RoleMember || j.r.State().ClusterID != cid {
			return errors.New("not yet")
		}
		return nil
	})
	if j.r.mayRaft(f.h.ID()) || j.r.Access(f.h.ID()) == p2p.AccessMember {
		t.Fatal("the joined node trusts the fake cluster")
	}
}

// Test_Security_TokenJoinerRefusesReplayedAnswer: a token joiner accepts
// an answer only with a proof of the token's cluster key over its own
// request: a proof the real cluster gave for the same request through
// another member (relayed), one for an earlier request (replayed) and one
// for another list of peers to trust (tampered) are refused, a proof-less
// answer passes only for a legacy token, and the very same fake with a
// right proof is accepted (so the refusals are the binding's).
func Test_Security_TokenJoinerRefusesReplayedAnswer(t *testing.T) {
	t.Parallel()
	a := oneNodeCluster(t, "sec-replay")
	cid := a.r.State().ClusterID
	id, secret, rec := addJoinToken(t, a, RoleMember)
	j := newTestNode(t, "joiner", "sec-replay", func(c *Config) { c.JoinToken, c.Admit = secret, "" })
	f := newFakeCluster(t, "sec-replay", cid, j)
	fid, jid := f.h.ID().String(), j.h.ID().String()
	j.r.queryPeers(ctxT(t, 10*time.Second))

	var mu sync.Mutex
	first := ""
	ask := func(what string, answer func(req membershipRequest) membershipResponse) error {
		t.Helper()
		f.mu.Lock()
		f.answer = func(req membershipRequest) membershipResponse {
			mu.Lock()
			defer mu.Unlock()
			if first == "" {
				first = req.Nonce
			}
			return answer(req)
		}
		f.mu.Unlock()
		_, err := j.r.requestMembership(ctxT(t, 20*time.Second), f.h.ID(), false)
		t.Logf("%s: %v", what, err)
		return err
	}
	proven := func(nonce, member string, servers []string) membershipResponse {
		resp := membershipResponse{Changed: true, Leader: member, Servers: servers}
		resp.ClusterProof = answerProof(rec, id, nonce, jid, member, cid, resp.Leader, resp.Servers)
		return resp
	}
	refused := func(what string, answer func(req membershipRequest) membershipResponse) {
		t.Helper()
		if err := ask(what, answer); err == nil || j.r.mayRaft(f.h.ID()) || j.r.Access(f.h.ID()) == p2p.AccessMember {
			t.Fatalf("%s: accepted (err %v, access %v)", what, err, j.r.Access(f.h.ID()))
		}
	}
	refused("relayed", func(req membershipRequest) membershipResponse {
		return proven(req.Nonce, a.h.ID().String(), []string{a.h.ID().String()})
	})
	refused("replayed", func(membershipRequest) membershipResponse {
		return proven(first, fid, []string{fid})
	})
	refused("tampered", func(req membershipRequest) membershipResponse {
		resp := proven(req.Nonce, fid, []string{fid})
		resp.Servers = append(resp.Servers, a.h.ID().String())
		return resp
	})
	refused("no proof", func(membershipRequest) membershipResponse {
		return membershipResponse{Changed: true, Leader: fid, Servers: []string{fid}}
	})
	if first == "" {
		t.Fatal("the fake was never asked")
	}

	// A proof-less answer to a token an older build made: accepted with a
	// warning (its record holds no cluster key to prove).
	legacy, err := ParseJoinToken(strings.Replace(secret, joinTokenPrefix, legacyJoinTokenPrefix, 1))
	if err != nil || !legacy.Legacy {
		t.Fatalf("legacy token: %+v, %v", legacy, err)
	}
	cur := j.r.joinTok
	j.r.joinTok = &legacy
	if err := ask("legacy token, no proof", func(membershipRequest) membershipResponse {
		return membershipResponse{Changed: true, Leader: fid, Servers: []string{fid}}
	}); err != nil {
		t.Fatalf("legacy token: %v", err)
	}
	j.r.expected.Delete(f.h.ID())
	j.r.joinTok = cur

	if err := ask("right proof", func(req membershipRequest) membershipResponse {
		return proven(req.Nonce, fid, []string{fid})
	}); err != nil || !j.r.mayRaft(f.h.ID()) {
		t.Fatalf("a right proof was refused: %v", err)
	}
}

// TestTokenAddClusterKey: a token record's cluster key is kept when it is
// 32 bytes of hex and dropped otherwise (never refused: a build before
// cluster keys ignores the field and accepts the entry, and every replica
// must agree).
func TestTokenAddClusterKey(t *testing.T) {
	id, _, rec := NewJoinToken("cid")
	rec.Role = RoleMember
	for _, tc := range []struct{ key, want string }{
		{rec.ClusterKey, rec.ClusterKey},
		{"", ""},
		{"zz", ""},
		{strings.Repeat("ab", 33), ""},
	} {
		var st ClusterState
		r := rec
		r.ClusterKey = tc.key
		payload, _ := json.Marshal(TokenAdd{ID: id, Token: r})
		if res := applyMembership(&st, OpTokenAdd, payload); res != nil {
			t.Fatalf("key %q: %v", tc.key, res)
		}
		if got := st.JoinTokens[id].ClusterKey; got != tc.want {
			t.Fatalf("key %q stored as %q, want %q", tc.key, got, tc.want)
		}
	}
}
