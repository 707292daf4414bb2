package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/p2p"
)

// The roles' limits (docs/security.md, "Roles" and "What is checked
// where"): a worker computes and replicates, never votes nor leads, and
// proposes nothing but its own registration; a stranger that answers a
// call is no member for that. These tests speak the protocols by hand from
// hosts the cluster admitted (or never met), as a compromised node would.

// admittedHost is a libp2p host, connected to n, whose key the cluster of
// n (its leader) admitted with role; it runs no raft of its own.
func admittedHost(t *testing.T, n *testNode, role string) host.Host {
	t.Helper()
	h := attacker(t, n)
	cmd, err := NewCommand(OpMemberAdd, MemberAdd{ID: h.ID().String(), Role: role, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatalf("admit a %s: %v", role, err)
	}
	if got := n.r.roleOf(h.ID()); got != role {
		t.Fatalf("admitted host has role %q, want %q", got, role)
	}
	return h
}

// admitFake makes the cluster of n (its leader) admit a key nobody holds.
func admitFake(t *testing.T, n *testNode, role string) peer.ID {
	t.Helper()
	p := newPeerID(t)
	cmd, err := NewCommand(OpMemberAdd, MemberAdd{ID: p.String(), Role: role, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatalf("admit a %s: %v", role, err)
	}
	return p
}

// raftClient is a raft NetworkTransport that dials from h.
func raftClient(t *testing.T, h host.Host) *raft.NetworkTransport {
	t.Helper()
	c := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: newStreamLayer(h, 5*time.Second), MaxPool: 1, Timeout: 5 * time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rpcHeader claims to be sent by p.
func rpcHeader(p peer.ID) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(p.String()), Addr: []byte(p.String())}
}

// Test_Security_WorkerRaftRPCs: every raft RPC is one a leader or a
// candidate sends, so a worker's are refused, and so is an RPC whose
// claimed sender is not the peer that sent it, even from a member. Without
// the checks a worker's AppendEntries with a higher term and an entry of
// its own (here an admin credential) was appended, committed and applied
// by the leader, which stepped down; its heartbeat (raft's fast path,
// which bypassed the transport's checks) and TimeoutNow unseated the
// leader too; and a member could send any of them in another member's
// name. A member's RPC in its own name still reaches raft.
func Test_Security_WorkerRaftRPCs(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-worker-raft")
	w := admittedHost(t, n, RoleWorker)
	m := admittedHost(t, n, RoleMember)
	before := n.r.State()
	term, last, lastTerm := n.r.Term(), n.r.raft.LastIndex(), n.r.lastLogTerm()
	self := raft.ServerID(n.h.ID().String())
	target := raft.ServerAddress(n.h.ID().String())
	evil, err := NewCommand(OpCredAdd, CredAdd{ID: "evil", Cred: Cred{Role: RoleAdmin, Hash: HashSecret("evil-token"), Created: time.Now().UTC()}})
	if err != nil {
		t.Fatal(err)
	}
	takeover := func(claim peer.ID) *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{
			RPCHeader: rpcHeader(claim), Term: term + 1, PrevLogEntry: last, PrevLogTerm: lastTerm, LeaderCommitIndex: last + 1,
			Entries: []*raft.Log{{Index: last + 1, Term: term + 1, Type: raft.LogCommand, Data: mustEncode(evil)}},
		}
	}
	wc, mc := raftClient(t, w), raftClient(t, m)

	// A member in its own name reaches raft (a stale term: answered, nothing changes).
	var aer raft.AppendEntriesResponse
	if err := mc.AppendEntries(self, target, &raft.AppendEntriesRequest{RPCHeader: rpcHeader(m.ID()), Term: 0}, &aer); err != nil {
		t.Fatalf("a member's stale AppendEntries was not answered: %v", err)
	}

	aer = raft.AppendEntriesResponse{}
	if err := wc.AppendEntries(self, target, takeover(w.ID()), &aer); err == nil {
		t.Errorf("a worker's AppendEntries with a higher term was answered (success %v)", aer.Success)
	}
	if err := wc.AppendEntries(self, target, &raft.AppendEntriesRequest{RPCHeader: rpcHeader(w.ID()), Term: term + 1}, &aer); err == nil {
		t.Error("a worker's heartbeat with a higher term was answered")
	}
	if err := wc.TimeoutNow(self, target, &raft.TimeoutNowRequest{RPCHeader: rpcHeader(w.ID())}, &raft.TimeoutNowResponse{}); err == nil {
		t.Error("a worker's TimeoutNow was answered")
	}
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(w.ID().String()), Address: raft.ServerAddress(w.ID().String())}}})
	snap := []byte("HYSN\x01\x02{}\x00")
	var isr raft.InstallSnapshotResponse
	if err := wc.InstallSnapshot(self, target, &raft.InstallSnapshotRequest{
		RPCHeader: rpcHeader(w.ID()), SnapshotVersion: 1, Term: term + 1, LastLogIndex: last + 10, LastLogTerm: term + 1,
		Configuration: conf, ConfigurationIndex: last + 10, Size: int64(len(snap)),
	}, &isr, bytes.NewReader(snap)); err == nil {
		t.Errorf("a worker's InstallSnapshot was answered (success %v)", isr.Success)
	}
	// In another's name: a worker claiming a member, a member claiming
	// the leader itself.
	if err := wc.AppendEntries(self, target, takeover(m.ID()), &aer); err == nil {
		t.Error("a worker's AppendEntries in a member's name was answered")
	}
	err = mc.AppendEntries(self, target, takeover(n.h.ID()), &aer)
	if err == nil || !strings.Contains(err.Error(), errBadRPC.Error()) {
		t.Errorf("a member's AppendEntries in the leader's name: %v, want refused (%v)", err, errBadRPC)
	}

	if n.r.Term() != term || !n.r.Leading() {
		t.Errorf("the leader was unseated: term %d → %d, leading %v", term, n.r.Term(), n.r.Leading())
	}
	if err := n.r.WaitForApplied(ctxT(t, testDeadline)); err != nil {
		t.Fatal(err)
	}
	after := n.r.State()
	if after.IsAdmin("evil-token") || len(after.Creds) != len(before.Creds) || after.ClusterID != before.ClusterID {
		t.Errorf("the state changed: the worker's admin credential %v, credentials %d → %d, cluster %s → %s",
			after.IsAdmin("evil-token"), len(before.Creds), len(after.Creds), before.ClusterID, after.ClusterID)
	}
}

// Test_Security_RaftNilEntry: a member's AppendEntries whose entry list
// holds a nil (msgpack nil decodes into a nil *raft.Log) is refused by the
// transport; it took the node down with a nil dereference before (the
// transport's check and raft both read every entry), found by FuzzRaftRPC.
func Test_Security_RaftNilEntry(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-raft-nil")
	m := admittedHost(t, n, RoleMember)
	term, last := n.r.Term(), n.r.raft.LastIndex()
	self := raft.ServerID(n.h.ID().String())
	target := raft.ServerAddress(n.h.ID().String())
	var aer raft.AppendEntriesResponse
	err := raftClient(t, m).AppendEntries(self, target, &raft.AppendEntriesRequest{
		RPCHeader: rpcHeader(m.ID()), Term: term, PrevLogEntry: last, LeaderCommitIndex: last,
		Entries: []*raft.Log{nil},
	}, &aer)
	if err == nil || !strings.Contains(err.Error(), errBadRPC.Error()) {
		t.Fatalf("an AppendEntries with a nil entry: %v (success %v), want refused (%v)", err, aer.Success, errBadRPC)
	}
	if n.r.Term() != term || !n.r.Leading() {
		t.Errorf("the leader was unseated: term %d → %d, leading %v", term, n.r.Term(), n.r.Leading())
	}
}

// captureConn is a net.Conn that keeps what is written to it and reads
// nothing: what raft's NetworkTransport sends for one RPC.
type captureConn struct {
	bytes.Buffer
	net.Conn // nil: only the methods below are called
}

func (c *captureConn) Write(b []byte) (int, error)      { return c.Buffer.Write(b) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return peerAddr("") }
func (c *captureConn) RemoteAddr() net.Addr             { return peerAddr("") }

// captureLayer dials its captureConn and accepts nothing.
type captureLayer struct {
	conn *captureConn
	done chan struct{}
}

func (l *captureLayer) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *captureLayer) Close() error              { close(l.done); return nil }
func (l *captureLayer) Addr() net.Addr            { return peerAddr("") }
func (l *captureLayer) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	return l.conn, nil
}

// wireAppendEntries returns the bytes raft sends for req on a raft stream,
// so that a test can write requests without reading the answers.
func wireAppendEntries(t *testing.T, req *raft.AppendEntriesRequest) []byte {
	t.Helper()
	l := &captureLayer{conn: &captureConn{}, done: make(chan struct{})}
	c := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: l, MaxPool: 1, Timeout: time.Second})
	defer c.Close()
	_ = c.AppendEntries("x", "x", req, &raft.AppendEntriesResponse{}) // fails reading the answer: EOF
	if l.conn.Len() == 0 {
		t.Fatal("raft wrote nothing")
	}
	return bytes.Clone(l.conn.Bytes())
}

// Test_Security_RaftUnreadAnswers: a member that pipelines raft requests
// and never reads the answers holds the node's handler only until the
// write deadline of inbound streams (shortened here): the node resets the
// stream. Without it the handler blocked in Write for good once the
// stream's window was full, where the read deadline never fires.
func Test_Security_RaftUnreadAnswers(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-raft-unread")
	n.r.trans.idle.Store(int64(time.Second))
	m := admittedHost(t, n, RoleMember)
	// A stale AppendEntries: raft answers it and changes nothing.
	req := wireAppendEntries(t, &raft.AppendEntriesRequest{RPCHeader: rpcHeader(m.ID()), Term: 0})
	batch := bytes.Repeat(req, 64)
	ctx := ctxT(t, testDeadline)
	st, err := m.NewStream(ctx, n.h.ID(), ProtocolRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	deadline := time.Now().Add(45 * time.Second)
	for sent := 0; ; sent++ {
		if time.Now().After(deadline) {
			t.Fatalf("the node still holds a stream whose answers were never read, after %d batches", sent)
		}
		_ = st.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := st.Write(batch)
		var ne net.Error
		switch {
		case err == nil, errors.As(err, &ne) && ne.Timeout(): // the node stopped reading: wait for its deadline
		case errors.Is(err, network.ErrReset):
			t.Logf("the node reset the stream after %d batches of %d requests", sent, 64)
			return
		default:
			t.Fatalf("write: %v", err)
		}
	}
}

// Test_Security_WorkerForwardedJoin: in --admit lan mode, a worker that
// forwards a join "from the LAN" on behalf of a key of its own making gets
// it a place on the pending list, not a membership (a member, and with it
// an admin credential); only a member's word is taken for a joiner it
// forwards.
func Test_Security_WorkerForwardedJoin(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, "founder", "sec-fwd-join", nil) // --admit lan
	n.run()
	waitUntil(t, testDeadline, "founder leads an initialized cluster", func() error {
		if !n.r.Leading() || !n.r.State().Initialized() || n.r.State().AdmitMode() != AdmitLAN {
			return errors.New("not yet")
		}
		return nil
	})
	w := admittedHost(t, n, RoleWorker)
	m := admittedHost(t, n, RoleMember)
	ctx := ctxT(t, 30*time.Second)
	forged := func(id peer.ID, via host.Host) membershipRequest {
		return membershipRequest{Cluster: "sec-fwd-join", ID: id.String(), Name: "forged", Forwarded: true, Via: via.ID().String(), LAN: true, Voter: VoterPrefer}
	}

	x := newPeerID(t)
	var resp membershipResponse
	err := p2p.Call(ctx, w, n.h.ID(), ProtocolJoin, forged(x, w), &resp)
	if role := n.r.roleOf(x); role != "" {
		t.Fatalf("a worker's forwarded LAN join admitted %s as %q (answer %+v, %v)", x, role, resp, err)
	}
	if err != nil || !resp.Pending {
		t.Fatalf("a worker's forwarded join: %+v, %v; want pending", resp, err)
	}
	// A member's forward is trusted as before.
	y := newPeerID(t)
	if err := p2p.Call(ctx, m, n.h.ID(), ProtocolJoin, forged(y, m), &resp); err != nil || n.r.roleOf(y) != RoleMember {
		t.Fatalf("a member's forwarded LAN join: %+v, %v, role %q; want admitted", resp, err, n.r.roleOf(y))
	}
}

// Test_Security_LeaveOthers: a leave request for another node, from a
// worker through a follower that forwards it, is refused by the leader;
// with an admin credential it removes the node. Without the check any
// member, a worker too, removed anyone through a follower.
func Test_Security_LeaveOthers(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, "sec-leave", nil)
	leader := waitAgreed(t, nodes)
	follower := otherThan(nodes, leader)
	w := attacker(t, follower)
	admit, err := NewCommand(OpMemberAdd, MemberAdd{ID: w.ID().String(), Role: RoleWorker, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.r.ApplyAs(ctxT(t, testDeadline), admit, testAdminToken); err != nil {
		t.Fatal(err)
	}
	victim := admitFake(t, leader, RoleMember)
	waitUntil(t, testDeadline, "the follower knows the worker and the victim", func() error {
		if follower.r.roleOf(w.ID()) != RoleWorker || follower.r.roleOf(victim) != RoleMember {
			return errors.New("not yet")
		}
		return nil
	})
	ctx := ctxT(t, 30*time.Second)
	req := membershipRequest{Cluster: "sec-leave", ID: victim.String(), Leave: true}
	if err := p2p.Call(ctx, w, follower.h.ID(), ProtocolJoin, req, nil); err == nil || leader.r.roleOf(victim) != RoleMember {
		t.Fatalf("a worker's leave for another node: %v, the victim's role now %q", err, leader.r.roleOf(victim))
	}
	req.Auth = testAdminToken
	if err := p2p.Call(ctx, w, follower.h.ID(), ProtocolJoin, req, nil); err != nil || leader.r.roleOf(victim) != "" {
		t.Fatalf("a leave for another node with an admin credential: %v, the victim's role now %q", err, leader.r.roleOf(victim))
	}
}

// Test_Security_RejoinStrangerAnswer: a member that asks to be re-added
// (it saw no leader for a while; rejoin is called directly here) asks no
// stranger that claims its cluster and a leader, and an answer to a join
// call from a peer it does not know as a member makes neither that peer
// nor those the answer names members. Before, the stranger's
// {"data":{}} put it in the expected set for good, and it passed every
// membership check (raft RPCs included).
func Test_Security_RejoinStrangerAnswer(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-rejoin")
	s := attacker(t, n)
	named := newPeerID(t)
	var joins atomic.Int64
	info := infoResponse{Cluster: "sec-rejoin", InCluster: true, ClusterID: n.r.State().ClusterID, Leader: s.ID().String()}
	p2p.Serve(s, ProtocolInfo, 8<<10, 5*time.Second, testLogger(), func(context.Context, peer.ID, json.RawMessage) (any, error) {
		return info, nil
	})
	p2p.Serve(s, ProtocolJoin, 8<<10, 5*time.Second, testLogger(), func(context.Context, peer.ID, json.RawMessage) (any, error) {
		joins.Add(1)
		return membershipResponse{Leader: s.ID().String(), Servers: []string{s.ID().String(), named.String()}}, nil
	})
	n.r.PeerFound(s.ID())
	ctx := ctxT(t, 30*time.Second)
	n.r.rejoin(ctx)
	if _, err := n.r.requestMembership(ctx, s.ID(), false); err == nil {
		t.Error("a stranger's answer to a join call was taken")
	}
	if joins.Load() == 0 {
		t.Fatal("the stranger was never asked")
	}
	if n.r.isMember(s.ID()) || n.r.isMember(named) || n.r.mayRaft(s.ID()) {
		t.Fatal("a stranger's answer made members")
	}
}

// Test_Security_BootPeersBounded: every identified peer is reported to
// consensus (PeerFound); a stranger rotating keys cannot grow the
// discovered-peer map beyond its bound, a member is remembered even when it
// is full, and once the strangers are gone for PeerDrop newcomers are
// remembered again. Before, the map only grew.
func Test_Security_BootPeersBounded(t *testing.T) {
	t.Parallel()
	n := oneNodeCluster(t, "sec-boot-peers")
	size := func() int {
		n.r.boot.mu.Lock()
		defer n.r.boot.mu.Unlock()
		return len(n.r.boot.peers)
	}
	for range 2 * maxBootPeers {
		n.r.PeerFound(newPeerID(t)) // a key that connected, was identified and left
	}
	// A loop slower than PeerDrop (a loaded machine) had the map forget its first strangers
	// when it was full, and end below its bound, where the next peer found forgets nobody: fill
	// it again (a new stranger is remembered while the map has room, so this ends).
	for size() < maxBootPeers {
		n.r.PeerFound(newPeerID(t))
	}
	last := time.Now() // every stranger was first seen by now
	if got := size(); got > maxBootPeers {
		t.Fatalf("%d discovered peers remembered, bound %d", got, maxBootPeers)
	}
	member := admitFake(t, n, RoleMember)
	n.r.PeerFound(member)
	n.r.boot.mu.Lock()
	_, ok := n.r.boot.peers[member]
	n.r.boot.mu.Unlock()
	if !ok {
		t.Fatal("a member was not remembered while the map was full")
	}
	// Once every stranger has been silent for PeerDrop, the next peer found makes room: the
	// strangers are forgotten, the member is not. (A new stranger at every poll, as this test
	// once did, kept PeerDrop's worth of them alive: about 300 at a 20 ms poll, never under the
	// bound's half when the loop above took more than PeerDrop on a loaded machine.)
	waitUntil(t, testDeadline, "every stranger silent for PeerDrop", func() error {
		if time.Since(last) <= n.r.t.PeerDrop {
			return errors.New("not yet")
		}
		return nil
	})
	fresh := newPeerID(t)
	n.r.PeerFound(fresh)
	n.r.boot.mu.Lock()
	_, freshKept := n.r.boot.peers[fresh]
	_, memberKept := n.r.boot.peers[member]
	n.r.boot.mu.Unlock()
	if !freshKept || !memberKept || size() != 2 {
		t.Fatalf("after PeerDrop: %d peers remembered (the new one: %v, the member: %v), want just those two", size(), freshKept, memberKept)
	}
}
