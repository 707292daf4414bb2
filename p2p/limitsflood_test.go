package p2p

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

// TestStrangersCannotStarveMembersOfStreams: strangers (connected as
// outsiders, which anyone may be) open streams and never name a protocol.
// libp2p waits 10 s for the name, and until then each stream is held in the
// transient scope that every peer shares: a few strangers filled it, and a
// member's call on a members-only protocol was reset (stream resource limit
// exceeded) for as long as they kept it up. Non-members' streams in
// negotiation are capped, so the member's calls go through.
func TestStrangersCannotStarveMembersOfStreams(t *testing.T) {
	a, _ := newTestHost(t, "flood", nil)
	b, _ := newTestHost(t, "flood", nil)
	a.SetAccess(func(p peer.ID) Access {
		if p == b.ID() {
			return AccessMember
		}
		return AccessOutsider
	})
	serveEcho(t, a, 1<<10)
	ctx := context.Background()
	if err := b.Host().Connect(ctx, addrInfo(t, a)); err != nil {
		t.Fatal(err)
	}
	call := func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var resp echoResp
		return Call(cctx, b.Host(), a.ID(), echoProto, echoReq{Text: "hi"}, &resp)
	}
	if err := call(); err != nil {
		t.Fatalf("before the flood: %v", err)
	}

	// Enough strangers to fill a's transient scope (scaled to this machine as
	// a's is) with fewer streams each than a's limit per peer, and enough that
	// maxOutsiderNegotiatingPerPeer each would fill it too.
	transient := int(rcmgr.DefaultLimits.AutoScale().ToPartialLimitConfig().Transient.StreamsInbound)
	n := min(transient/maxOutsiderNegotiatingPerPeer+2, 100)
	perStranger := transient/n + maxOutsiderNegotiatingPerPeer
	var tcp []multiaddr.Multiaddr // yamux, whose streams a sees in the order they were opened
	for _, m := range a.Host().Addrs() {
		if _, err := m.ValueForProtocol(multiaddr.P_TCP); err == nil {
			tcp = append(tcp, m)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		s, err := libp2p.New(libp2p.NoListenAddrs, libp2p.ResourceManager(&network.NullResourceManager{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if err := s.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: tcp}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { errs <- flood(ctx, s, a.ID(), perStranger) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every stranger's streams have been taken or refused by a (see flood),
	// and libp2p holds the taken ones 10 s: the member is served meanwhile.
	for i := range 10 {
		if err := call(); err != nil {
			t.Fatalf("call %d of the member during the flood of %d strangers × %d streams (transient limit %d): %v",
				i, n, perStranger, transient, err)
		}
	}
}

// flood opens count streams from s to p, each sending one byte of a
// protocol negotiation that never ends, then negotiates ping on one more
// stream and waits for any answer (a refusal too): the connection's streams
// reach p's swarm in order, so by then p has taken or refused every one.
func flood(ctx context.Context, s host.Host, p peer.ID, count int) error {
	for i := range count {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := s.Network().NewStream(network.WithNoDial(sctx, "flood"), p)
		cancel()
		if err != nil {
			return fmt.Errorf("flood stream %d: %w", i, err)
		}
		if _, err := st.Write([]byte{0x13}); err != nil { // a header's length, never its text
			_ = st.Reset()
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.Network().NewStream(network.WithNoDial(sctx, "flood"), p)
	if err != nil {
		return fmt.Errorf("last stream: %w", err)
	}
	defer func() { _ = st.Reset() }()
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	if err := msmux.SelectProtoOrFail(ping.ID, st); err != nil && noAnswer(err) {
		return fmt.Errorf("no answer on the last stream: %w", err)
	}
	return nil
}
