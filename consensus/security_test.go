package consensus

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/hydra-compute/hydra/internal/streamflood"
	"github.com/hydra-compute/hydra/p2p"
)

// attacker is a libp2p host with a fresh key that was never admitted: a
// stranger on the LAN.
func attacker(t *testing.T, target *testNode) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	h.Peerstore().AddAddrs(target.h.ID(), target.h.Addrs(), peerstore.PermanentAddrTTL)
	if err := h.Connect(ctxT(t, 10*time.Second), peer.AddrInfo{ID: target.h.ID(), Addrs: target.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return h
}

// approvalCluster starts k nodes in approval mode: the first founds the
// cluster, the others join with tokens or approval by the test.
func oneNodeCluster(t *testing.T, name string) *testNode {
	t.Helper()
	n := newTestNode(t, "founder", name, func(c *Config) { c.Admit = "" })
	n.run()
	waitUntil(t, testDeadline, "founder leads an initialized cluster", func() error {
		if !n.r.Leading() || !n.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	return n
}

// Test_Security_OutsiderRaftRPCs: raft AppendEntries and InstallSnapshot
// with huge terms from a fresh key are refused; the node's term, cluster ID
// and credentials stay as they were.
func Test_Security_OutsiderRaftRPCs(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-raft")
	before := n.r.State()
	term := n.r.Term()
	evil := attacker(t, n)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: newStreamLayer(evil, 5*time.Second), MaxPool: 1, Timeout: 5 * time.Second,
	})
	defer trans.Close()
	target := raft.ServerAddress(n.h.ID().String())
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(evil.ID().String()), Addr: []byte(evil.ID().String())}
	var aer raft.AppendEntriesResponse
	err := trans.AppendEntries(raft.ServerID(n.h.ID().String()), target, &raft.AppendEntriesRequest{
		RPCHeader: hdr, Term: 1 << 40, PrevLogEntry: 0, LeaderCommitIndex: 1 << 30,
		Entries: []*raft.Log{{Index: 1, Term: 1 << 40, Type: raft.LogCommand, Data: []byte{1, 1, '{', '}'}}},
	}, &aer)
	if err == nil && aer.Success {
		t.Fatal("append entries from an outsider succeeded")
	}
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(evil.ID().String()), Address: raft.ServerAddress(evil.ID().String())}}})
	var isr raft.InstallSnapshotResponse
	snap := []byte("HYSN\x01\x02{}\x00")
	err = trans.InstallSnapshot(raft.ServerID(n.h.ID().String()), target, &raft.InstallSnapshotRequest{
		RPCHeader: hdr, SnapshotVersion: 1, Term: 1 << 40, LastLogIndex: 1 << 30, LastLogTerm: 1 << 40,
		Configuration: conf, ConfigurationIndex: 1, Size: int64(len(snap)),
	}, &isr, strings.NewReader(string(snap)))
	if err == nil && isr.Success {
		t.Fatal("install snapshot from an outsider succeeded")
	}
	after := n.r.State()
	if n.r.Term() != term || after.ClusterID != before.ClusterID || !after.IsAdmin(testAdminToken) || len(after.Creds) != len(before.Creds) {
		t.Fatalf("state changed: term %d → %d, cluster %s → %s", term, n.r.Term(), before.ClusterID, after.ClusterID)
	}
	if !n.r.Leading() {
		t.Fatal("the founder lost its leadership")
	}
}

// Test_Security_MalformedConfiguration: an RPC carrying a configuration
// raft cannot decode (it would panic) is refused by the transport, even
// from a member.
func Test_Security_MalformedConfiguration(t *testing.T) {
	tr := &transport{allow: func(peer.ID) bool { return true }}
	from := newPeerID(t)
	id := []byte(from.String())
	hdr := raft.RPCHeader{ID: id, Addr: id}
	for _, bad := range [][]byte{nil, {0x92, 0x01}, {0xff, 0xff}, []byte("garbage")} {
		if err := tr.check(from, &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: 1, Configuration: bad}); !errors.Is(err, errBadRPC) {
			t.Fatalf("install snapshot with configuration %x: %v, want refused", bad, err)
		}
		if err := tr.check(from, &raft.AppendEntriesRequest{RPCHeader: hdr, Entries: []*raft.Log{{Type: raft.LogConfiguration, Data: bad}}}); !errors.Is(err, errBadRPC) {
			t.Fatalf("append entries with configuration %x: %v, want refused", bad, err)
		}
	}
	good := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(id), Address: raft.ServerAddress(id)}}})
	if err := tr.check(from, &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: 1, Configuration: good}); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	tr.allow = func(peer.ID) bool { return false }
	if err := tr.check(from, &raft.AppendEntriesRequest{RPCHeader: hdr}); !errors.Is(err, errBadRPC) {
		t.Fatalf("append entries from a non-member: %v, want refused", err)
	}
}

func newPeerID(t *testing.T) peer.ID {
	p, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Test_Security_OutsiderProtocols: a stranger's join request waits for
// approval, a wrong token is refused, apply and stats streams are reset,
// and a gigabyte length prefix costs no memory.
func Test_Security_OutsiderProtocols(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-proto")
	evil := attacker(t, n)
	ctx := ctxT(t, 30*time.Second)
	req := membershipRequest{Cluster: "sec-proto", ID: evil.ID().String(), Name: "evil"}
	var resp membershipResponse
	if err := p2p.Call(ctx, evil, n.h.ID(), ProtocolJoin, req, &resp); err != nil || !resp.Pending {
		t.Fatalf("join without token: %+v, %v; want pending", resp, err)
	}
	if len(n.r.Servers()) != 1 || n.r.isMember(evil.ID()) {
		t.Fatal("the stranger became a member")
	}
	if p := n.r.Pending(); len(p) != 1 || p[0].ID != evil.ID().String() || p[0].Fingerprint != Fingerprint(evil.ID()) {
		t.Fatalf("pending list %+v", p)
	}
	// A forged token (right form, unknown key) is refused.
	_, secret, _ := NewJoinToken(n.r.State().ClusterID)
	pt, _ := ParseJoinToken(secret)
	time.Sleep(joinInterval) // the rate limit, not synchronisation
	req.TokenID, req.Proof = pt.ID, pt.Proof(n.r.State().ClusterID, evil.ID().String(), n.h.ID().String())
	if err := p2p.Call(ctx, evil, n.h.ID(), ProtocolJoin, req, &resp); err == nil {
		t.Fatal("join with a forged token accepted")
	}
	// Members-only protocols reset the stream before reading.
	cmd, _ := EncodeCommand(Command{Op: OpAppFirst + 1, Payload: []byte("{}")})
	if err := p2p.Call(ctx, evil, n.h.ID(), ProtocolApply, applyRequest{Command: cmd}, nil); err == nil {
		t.Fatal("apply from a stranger answered")
	}
	if err := p2p.Call(ctx, evil, n.h.ID(), ProtocolStats, struct{}{}, nil); err == nil {
		t.Fatal("stats from a stranger answered")
	}
	// A gigabyte length prefix: refused before any allocation.
	streamflood.Flood(t, ctx, evil, n.h.ID(), []protocol.ID{ProtocolInfo, ProtocolJoin, ProtocolApply, ProtocolRaft}, 20, 0)
	if !n.r.Leading() || n.r.Role() != RoleMember {
		t.Fatal("the node is no longer a leading member")
	}
}

// Test_Security_JoinTokenAndApproval: a node with a join token joins with
// no approval and its proof is bound to both peer IDs; a node without one
// waits until an admin approves it; an evicted node's key is refused.
func Test_Security_JoinTokenAndApproval(t *testing.T) {
	t.Parallel()
	a := oneNodeCluster(t, "sec-join")
	cid := a.r.State().ClusterID
	id, secret, rec := NewJoinToken(cid)
	rec.Role, rec.Uses, rec.Created = RoleWorker, 1, time.Now()
	tcmd, _ := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: rec})
	if _, err := a.r.ApplyAs(ctxT(t, testDeadline), tcmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	st := a.r.State()
	pt, err := ParseJoinToken(secret)
	if err != nil || pt.ClusterFP != ClusterFingerprint(cid) {
		t.Fatalf("token %q: %v", secret, err)
	}
	// A proof for one (joiner, member) pair is worth nothing for another.
	j, m, other := newPeerID(t).String(), newPeerID(t).String(), newPeerID(t).String()
	proof := pt.Proof(cid, j, m)
	if _, err := st.verifyJoinProof(id, proof, j, m, time.Now()); err != nil {
		t.Fatalf("good proof: %v", err)
	}
	if _, err := st.verifyJoinProof(id, proof, other, m, time.Now()); err == nil {
		t.Fatal("a proof replayed by another joiner verified")
	}
	if _, err := st.verifyJoinProof(id, proof, j, other, time.Now()); err == nil {
		t.Fatal("a proof replayed to another member verified")
	}

	w := newTestNode(t, "worker", "sec-join", func(c *Config) { c.JoinToken, c.NodeToken, c.VoterPref = secret, "worker-token", VoterPrefer })
	connectAll(t, []*testNode{a, w})
	w.run()
	waitUntil(t, testDeadline, "the token holder joins as a worker", func() error {
		if !a.r.hasServer(w.h.ID()) || w.r.Role() != RoleWorker || !w.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	if a.r.State().JoinTokens[id].Used != 1 {
		t.Fatalf("token uses %+v", a.r.State().JoinTokens[id])
	}
	if w.r.NodeTokenActive() {
		t.Fatal("a worker got an admin credential")
	}
	for _, s := range a.r.Servers() {
		if s.ID == w.h.ID() && s.Voter {
			t.Fatal("a worker holds a vote")
		}
	}

	// Without a token: pending until approved.
	p := newTestNode(t, "plain", "sec-join", func(c *Config) { c.Admit, c.NodeToken = "", "plain-token" })
	connectAll(t, []*testNode{a, w, p})
	p.run()
	waitUntil(t, testDeadline, "the plain node is pending", func() error {
		for _, pn := range a.r.Pending() {
			if pn.ID == p.h.ID().String() {
				return nil
			}
		}
		return errors.New("not pending")
	})
	if a.r.hasServer(p.h.ID()) || p.r.NodeTokenActive() {
		t.Fatal("an unapproved node joined")
	}
	if _, err := a.r.Approve(ctxT(t, testDeadline), Fingerprint(p.h.ID()), "", "wrong-token"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("approve with a wrong credential: %v, want forbidden", err)
	}
	// A worker forwarding an admin command without a credential: the
	// leader refuses it.
	cmd, _ := NewCommand(OpMemberAdd, MemberAdd{ID: p.h.ID().String(), Role: RoleMember})
	if _, err := w.r.apply(ctxT(t, testDeadline), cmd, ""); !errors.Is(err, ErrRejected) || a.r.roleOf(p.h.ID()) != "" {
		t.Fatalf("a worker admitted a node without an admin credential: %v", err)
	}
	start := time.Now()
	if _, err := a.r.Approve(ctxT(t, testDeadline), Fingerprint(p.h.ID()), "", testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, testDeadline, "the approved node joins and holds a credential", func() error {
		if !a.r.hasServer(p.h.ID()) || !p.r.NodeTokenActive() {
			return errors.New("not yet")
		}
		return nil
	})
	t.Logf("approval → member with a credential: %v", time.Since(start).Round(time.Millisecond))

	// Evict: the configuration drops it and every member refuses its key.
	if err := a.r.Evict(ctxT(t, testDeadline), p.h.ID(), testAdminToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, testDeadline, "the evicted node is gone", func() error {
		if a.r.hasServer(p.h.ID()) || a.r.Access(p.h.ID()) != p2p.AccessRefused {
			return errors.New("not yet")
		}
		return nil
	})
	var resp membershipResponse
	err = p2p.Call(ctxT(t, 10*time.Second), p.h, a.h.ID(), ProtocolJoin, membershipRequest{Cluster: "sec-join", ID: p.h.ID().String()}, &resp)
	if err == nil {
		t.Fatalf("an evicted node's join was answered: %+v", resp)
	}
}

// FuzzJoinDecoders: join tokens and join requests from anyone never panic
// the parser, the proof check or the handler's decoding; a token that
// parses makes proofs its own record verifies, a proof the fuzzer makes
// for a record whose key it does not hold never verifies, and a membership
// op that is refused leaves the state as it was.
func FuzzJoinDecoders(f *testing.F) {
	_, secret, _ := NewJoinToken("c")
	f.Add(secret, `{"cluster":"x","id":"12D3KooW","token_id":"ab","proof":"00"}`)
	f.Add("hydra-join1.000000000000.a.AAAA", `{}`)
	f.Add("", `{"addrs":["/ip4/1.2.3.4/tcp/1"],"lan":true}`)
	f.Add(secret, `{"id":"j","role":"member","token_id":"ab","at":"2030-01-01T00:00:00Z"}`)
	f.Add("", `{"id":"cd","token":{"role":"worker","key":"`+strings.Repeat("00", 32)+`","uses":1}}`)
	// The record's key is a real one whose private half the fuzzer never sees.
	_, _, rec := NewJoinToken("c")
	rec.Role = RoleMember
	state := func() *ClusterState {
		return &ClusterState{ClusterID: "c", JoinTokens: map[string]JoinToken{"ab": rec},
			Members: map[string]Member{"m": {Role: RoleMember}}, Creds: map[string]Cred{"k": {Role: RoleAdmin, Hash: HashSecret("t")}}}
	}
	f.Fuzz(func(t *testing.T, tok, req string) {
		if pt, err := ParseJoinToken(tok); err == nil {
			own := ClusterState{ClusterID: "c", JoinTokens: map[string]JoinToken{pt.ID: {Role: RoleWorker, Key: hex.EncodeToString(pt.key.Public().(ed25519.PublicKey))}}}
			if _, err := own.verifyJoinProof(pt.ID, pt.Proof("c", "j", "m"), "j", "m", time.Now()); err != nil {
				t.Fatalf("token %q: its own proof: %v", tok, err)
			}
		}
		var r membershipRequest
		if err := jsonUnmarshal([]byte(req), &r); err == nil {
			if _, err := state().verifyJoinProof(r.TokenID, r.Proof, r.ID, r.Via, time.Now()); err == nil {
				t.Fatalf("a made-up proof verified: %q", req)
			}
		}
		for _, op := range []Op{OpMemberAdd, OpMemberRemove, OpCredAdd, OpCredRemove, OpTokenAdd, OpTokenRemove, OpAdmit} {
			st := state()
			before, _ := json.Marshal(st)
			if res := applyMembership(st, op, []byte(req)); isErr(res) {
				if after, _ := json.Marshal(st); string(after) != string(before) {
					t.Fatalf("op %#x refused (%v) but changed the state:\n%s\n%s", op, res, before, after)
				}
			}
		}
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func isErr(res any) bool { _, ok := res.(error); return ok }
