package consensus

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Raft's RPC type bytes on the wire (hashicorp/raft's net_transport.go): the
// byte before each msgpack-encoded request.
const (
	rpcAppendEntries byte = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// fuzzSender is the authenticated peer of FuzzRaftRPC's stream: a fixed
// key, so that the seeds (and a regression input under testdata) name it.
func fuzzSender(tb testing.TB) peer.ID {
	k, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// decodeRaftRPC decodes one request the way raft's NetworkTransport does
// on an inbound stream (handleCommand): a type byte, then the request in
// msgpack. ok is false where raft would drop the stream instead.
func decodeRaftRPC(b []byte) (cmd any, ok bool) {
	if len(b) == 0 {
		return nil, false
	}
	var v any
	switch b[0] {
	case rpcAppendEntries:
		v = &raft.AppendEntriesRequest{}
	case rpcRequestVote:
		v = &raft.RequestVoteRequest{}
	case rpcInstallSnapshot:
		v = &raft.InstallSnapshotRequest{}
	case rpcTimeoutNow:
		v = &raft.TimeoutNowRequest{}
	case rpcRequestPreVote:
		v = &raft.RequestPreVoteRequest{}
	default:
		return nil, false
	}
	if err := codec.NewDecoder(bytes.NewReader(b[1:]), &codec.MsgpackHandle{}).Decode(v); err != nil {
		return nil, false
	}
	return v, true
}

// encodeRaftRPC is the sender's side of decodeRaftRPC.
func encodeRaftRPC(tb testing.TB, typ byte, req any) []byte {
	var b bytes.Buffer
	b.WriteByte(typ)
	if err := codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(req); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzRaftRPC feeds what a member's raft stream may carry to the
// transport's check, decoded as raft decodes it: check never panics, and
// what it lets through to raft is what raft can take without panicking:
// no missing log entry (raft reads every entry's index), every
// configuration decodable (raft's DecodeConfiguration panics on a bad
// one), and every sender identity the RPC claims the stream's own.
func FuzzRaftRPC(f *testing.F) {
	from := fuzzSender(f)
	id := []byte(from.String())
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: id, Addr: id}
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(id), Address: raft.ServerAddress(id)}}})
	f.Add(encodeRaftRPC(f, rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 2, LeaderCommitIndex: 1,
		Entries: []*raft.Log{{Index: 1, Term: 2, Type: raft.LogCommand, Data: []byte{1, 1, '{', '}'}}, {Index: 2, Term: 2, Type: raft.LogConfiguration, Data: conf}}}))
	f.Add(encodeRaftRPC(f, rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 2}))
	f.Add(encodeRaftRPC(f, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: 1, Term: 2, Configuration: conf, Size: 9}))
	f.Add(encodeRaftRPC(f, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 3}))
	f.Add(encodeRaftRPC(f, rpcRequestPreVote, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 3}))
	f.Add(encodeRaftRPC(f, rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: hdr}))
	tr := &transport{allow: func(p peer.ID) bool { return p == from }}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, ok := decodeRaftRPC(b)
		if !ok {
			return
		}
		if err := tr.check(from, cmd); err != nil {
			return
		}
		var confs [][]byte
		var h raft.RPCHeader
		switch c := cmd.(type) {
		case *raft.AppendEntriesRequest:
			h = c.RPCHeader
			for i, e := range c.Entries {
				if e == nil {
					t.Fatalf("entry %d of %d is missing", i, len(c.Entries))
				}
				if e.Type == raft.LogConfiguration {
					confs = append(confs, e.Data)
				}
			}
			if len(c.Leader) > 0 && string(c.Leader) != from.String() {
				t.Fatalf("leader %q let through from %s", c.Leader, from)
			}
		case *raft.InstallSnapshotRequest:
			h = c.RPCHeader
			if c.SnapshotVersion > 0 {
				confs = append(confs, c.Configuration)
			}
		case *raft.RequestVoteRequest:
			h = c.RPCHeader
		case *raft.RequestPreVoteRequest:
			h = c.RPCHeader
		case *raft.TimeoutNowRequest:
			h = c.RPCHeader
		}
		for _, claim := range [][]byte{h.ID, h.Addr} {
			if len(claim) > 0 && string(claim) != from.String() {
				t.Fatalf("claim %q let through from %s", claim, from)
			}
		}
		for _, c := range confs {
			if len(raft.DecodeConfiguration(c).Servers) == 0 { // panics on what raft cannot take
				t.Fatal("an empty configuration let through")
			}
		}
	})
}
