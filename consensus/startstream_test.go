package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestRaftStreamWhileStartingIsRefused: a raft stream that reaches a node while it starts (the
// transport exists and the log is replayed, raft not made yet) is refused, not served. Before,
// the transport served ProtocolRaft from its making, and the stream's allow check (mayRaft) read
// the configuration of a raft that did not exist yet: a nil dereference that crashed the node.
// The chaos harness found it on a node restarting after a full disk, whose peers dialled it at
// once; a stranger could do the same to any node that starts. Once raft runs, the same stranger's
// stream is reset unread (it is no member).
func TestRaftStreamWhileStartingIsRefused(t *testing.T) {
	t.Parallel()
	stranger, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Close() })
	tried := false
	var during error
	n := newTestNode(t, "a", "start-stream", func(c *Config) {
		c.beforeRaft = func(h host.Host) {
			tried = true
			ctx := ctxT(t, testDeadline)
			if err := stranger.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
				during = err
				return
			}
			st, err := stranger.NewStream(ctx, h.ID(), ProtocolRaft)
			if err != nil {
				during = err
				return
			}
			// Served: wait for the handler's verdict (a reset, or the crash this test is about).
			_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = st.Read(make([]byte, 1))
			_ = st.Reset()
		}
	})
	if !tried {
		t.Fatal("the hook before raft's start never ran")
	}
	if during == nil {
		t.Fatal("a raft stream opened while the node started was served before raft existed; want it refused (protocol not supported)")
	}
	t.Logf("while starting: %v", during)
	// Once raft runs, raft streams are served, and a stranger's is reset before a byte is read
	// (while negotiating, or at its first read).
	ctx := ctxT(t, testDeadline)
	st, err := stranger.NewStream(ctx, n.h.ID(), ProtocolRaft)
	if err == nil {
		defer st.Reset()
		_ = st.SetReadDeadline(time.Now().Add(testDeadline))
		if _, err = st.Read(make([]byte, 1)); err == nil {
			t.Fatal("after the start: a stranger's raft stream was answered; want it reset")
		}
	}
	if !errors.Is(err, network.ErrReset) {
		t.Fatalf("after the start: %v; want the stranger's raft stream served and reset", err)
	}
}
