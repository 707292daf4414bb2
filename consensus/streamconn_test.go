package consensus

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// TestInboundRaftStreamResetReadsAsItsEnd: a member closes a pooled raft conn by resetting its
// stream (streamConn.Close), and raft logged every such close on the serving side as "failed to
// decode incoming command" at ERROR (hundreds in a chaos run, one per conn at every graceful
// stop). An inbound stream's reset now reads as io.EOF, which raft's handler takes as the
// conn's end; a connection the remote closed is still an error.
func TestInboundRaftStreamResetReadsAsItsEnd(t *testing.T) {
	const proto = protocol.ID("/hydra/test/streamconn/1.0.0")
	newHost := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	server := newHost()
	reads, served := make(chan error, 4), make(chan struct{}, 4)
	server.SetStreamHandler(proto, func(st network.Stream) {
		c := &streamConn{Stream: st, idle: time.Minute}
		b := make([]byte, 16)
		for first := true; ; first = false {
			if _, err := c.Read(b); err != nil {
				reads <- err
				return
			}
			if first {
				served <- struct{}{}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(client host.Host) network.Stream {
		if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
			t.Fatal(err)
		}
		st, err := client.NewStream(ctx, server.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("rpc")); err != nil {
			t.Fatal(err)
		}
		select { // the handler reads it: the stream is open on both sides
		case <-served:
		case <-ctx.Done():
			t.Fatal("the stream never reached its handler")
		}
		return st
	}
	result := func() error {
		select {
		case err := <-reads:
			return err
		case <-ctx.Done():
			t.Fatal("the served stream's read never ended")
			return nil
		}
	}

	client := newHost()
	st := open(client)
	if err := st.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := result(); err != io.EOF {
		t.Fatalf("a stream the member reset read %v, want io.EOF (raft logs any other error at ERROR)", err)
	}

	gone := newHost()
	open(gone)
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	if err := result(); err == nil || err == io.EOF {
		t.Fatalf("a connection the member's host closed read %v, want an error", err)
	}
}
