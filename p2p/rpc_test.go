package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/hydra-compute/hydra/wire"
)

type echoReq struct {
	Text string `json:"text"`
	Fail string `json:"fail,omitempty"`
	Big  int    `json:"big,omitempty"`
	Boom bool   `json:"boom,omitempty"`
}

type echoResp struct {
	Text string `json:"text"`
	From string `json:"from"`
}

const echoProto = protocol.ID("/hydra/test/echo/1.0.0")

func serveEcho(t *testing.T, h *Host, max int) {
	t.Helper()
	// The server's deadline is not under test: it is generous so that building
	// the over-wire.MaxStreamFrame response under -race on a loaded machine cannot reset
	// the stream before its header is written.
	Serve(h.Host(), echoProto, max, 60*time.Second, slog.New(slog.DiscardHandler),
		func(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
			var req echoReq
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, err
			}
			switch {
			case req.Fail != "":
				return nil, errors.New(req.Fail)
			case req.Boom:
				panic("boom")
			case req.Big > 0:
				return echoResp{Text: strings.Repeat("x", req.Big)}, nil
			}
			return echoResp{Text: req.Text, From: from.String()}, nil
		})
}

func TestCallServe(t *testing.T) {
	srv, _ := newTestHost(t, "c", nil)
	cli, _ := newTestHost(t, "c", nil)
	serveEcho(t, srv, 1<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cli.Host().Connect(ctx, addrInfo(t, srv)); err != nil {
		t.Fatal(err)
	}

	t.Run("round trip", func(t *testing.T) {
		var resp echoResp
		if err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Text: "hi"}, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Text != "hi" || resp.From != cli.ID().String() {
			t.Fatalf("resp = %+v", resp)
		}
		// A nil resp discards the answer.
		if err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Text: "hi"}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("handler error is a RemoteError", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Fail: "not leader"}, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Msg != "not leader" {
			t.Fatalf("err = %v (%T), want RemoteError{not leader}", err, err)
		}
	})
	t.Run("handler panic is a RemoteError", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Boom: true}, nil)
		var re *RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("err = %v, want RemoteError", err)
		}
	})
	t.Run("request over the server's limit is refused", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Text: strings.Repeat("y", 2<<10)}, nil)
		var re *RemoteError
		if err == nil || errors.As(err, &re) {
			t.Fatalf("err = %v, want a transport error (stream reset)", err)
		}
	})
	t.Run("response over wire.MaxStreamFrame is refused", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Big: wire.MaxStreamFrame + 1}, nil)
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("response over CallLimit's limit is refused", func(t *testing.T) {
		var resp echoResp
		if err := CallLimit(ctx, cli.Host(), srv.ID(), echoProto, 4<<10, echoReq{Big: 3 << 10}, &resp); err != nil || len(resp.Text) != 3<<10 {
			t.Fatalf("an answer within the limit: %v, %d bytes", err, len(resp.Text))
		}
		err := CallLimit(ctx, cli.Host(), srv.ID(), echoProto, 4<<10, echoReq{Big: 64 << 10}, nil)
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("invalid JSON request", func(t *testing.T) {
		s, err := cli.Host().NewStream(ctx, srv.ID(), echoProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := wire.WriteFrame(s, []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		raw, err := wire.ReadFrame(bufio.NewReader(s), wire.MaxStreamFrame)
		if err != nil {
			t.Fatal(err)
		}
		var env envelope
		if err := json.Unmarshal(raw, &env); err != nil || !strings.Contains(env.Error, "JSON") {
			t.Fatalf("envelope %s (%v), want a JSON error", raw, err)
		}
	})
	t.Run("unknown protocol", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), "/hydra/test/nope/1.0.0", echoReq{}, nil)
		var re *RemoteError
		if err == nil || errors.As(err, &re) {
			t.Fatalf("err = %v, want a transport error", err)
		}
	})
}

// TestCallEndsWhenCancelled: a Call to a peer that took the request and never answers (its
// machine suspended, its connection open) returns as soon as its context is cancelled, not at
// the context's deadline: a caller that gave up on the peer (a worker whose leader changed)
// would otherwise wait the whole timeout.
func TestCallEndsWhenCancelled(t *testing.T) {
	srv, _ := newTestHost(t, "c", nil)
	cli, _ := newTestHost(t, "c", nil)
	const silentProto = protocol.ID("/hydra/test/silent/1.0.0")
	hold := make(chan struct{})
	defer close(hold)
	got := make(chan struct{}, 1)
	srv.Host().SetStreamHandler(silentProto, func(s network.Stream) {
		defer s.Reset()
		if _, err := wire.ReadFrame(bufio.NewReader(s), 1<<10); err == nil {
			got <- struct{}{}
		}
		<-hold // never answers
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cli.Host().Connect(ctx, addrInfo(t, srv)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- Call(ctx, cli.Host(), srv.ID(), silentProto, echoReq{Text: "hi"}, nil) }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the silent peer")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want one that says the call was cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Call still waits for the silent peer 5 s after its context was cancelled")
	}
}

// TestCallTakesAnAnswerThatCameFirst: a server's close ends the client's
// sending over QUIC (the stream's read half is cancelled), so a client whose
// request was still going out when the answer and the close came (Serve
// answers as soon as it has read its frame: a client paused between its write
// and its close of the request, or a server that answers without reading it
// all) got a write or close error, and the answer was never read. The server
// here answers at once and closes, before the client's request (larger than
// QUIC's flow-control window) can have been sent: Call returns the answer.
func TestCallTakesAnAnswerThatCameFirst(t *testing.T) {
	srv, _ := newTestHost(t, "c", nil)
	cli, _ := newTestHost(t, "c", nil)
	const earlyProto = protocol.ID("/hydra/test/early/1.0.0")
	srv.Host().SetStreamHandler(earlyProto, func(s network.Stream) {
		out, _ := json.Marshal(envelope{Data: json.RawMessage(`{"text":"early"}`)})
		if err := wire.WriteFrame(s, out); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
	var quic []multiaddr.Multiaddr
	for _, m := range srv.Host().Addrs() {
		if _, err := m.ValueForProtocol(multiaddr.P_QUIC_V1); err == nil {
			quic = append(quic, m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cli.Host().Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: quic}); err != nil {
		t.Fatal(err)
	}
	var resp echoResp
	if err := Call(ctx, cli.Host(), srv.ID(), earlyProto, echoReq{Text: strings.Repeat("z", 4<<20)}, &resp); err != nil {
		t.Fatalf("Call: %v, want the answer the server sent", err)
	}
	if resp.Text != "early" {
		t.Fatalf("resp = %+v", resp)
	}
}
