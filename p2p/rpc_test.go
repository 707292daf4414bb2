package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func TestFrame_RoundTrip(t *testing.T) {
	var buf bytes.Buffer
	msgs := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("ab"), 300)}
	for _, m := range msgs {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for _, want := range msgs {
		got, err := ReadFrame(r, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if _, err := ReadFrame(r, 1000); err != io.EOF {
		t.Fatalf("at end: err = %v, want io.EOF", err)
	}
}

func TestFrame_LimitAndTruncation(t *testing.T) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, make([]byte, 101))
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(buf.Bytes())), 100); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over limit: err = %v, want ErrFrameTooLarge", err)
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(buf.Bytes()[:50])), 1000); err == nil || err == io.EOF {
		t.Fatalf("truncated body: err = %v, want a read error", err)
	}
	// A huge announced length is refused before any allocation.
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], 1<<62)
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(hdr[:n])), MaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge header: err = %v, want ErrFrameTooLarge", err)
	}
}

// FuzzReadFrame checks that no input makes ReadFrame panic, allocate past
// its limit or accept something WriteFrame would not have written.
func FuzzReadFrame(f *testing.F) {
	frame := func(p []byte) []byte {
		var b bytes.Buffer
		_ = WriteFrame(&b, p)
		return b.Bytes()
	}
	f.Add([]byte{}, 64)
	f.Add(frame(nil), 64)
	f.Add(frame([]byte(`{"data":{"x":1}}`)), 64)
	f.Add(frame(bytes.Repeat([]byte{0xff}, 100)), 64)                                   // over the limit
	f.Add(frame([]byte("hello"))[:3], 64)                                               // truncated body
	f.Add([]byte{0x80, 0x80, 0x80}, 64)                                                 // truncated varint
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 64) // varint overflow
	f.Add(append(frame([]byte("a")), frame([]byte("b"))...), 64)                        // two frames
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<20 {
			max = 1 << 10
		}
		r := bufio.NewReader(bytes.NewReader(data))
		got, err := ReadFrame(r, max)
		if err != nil {
			if got != nil {
				t.Fatalf("error %v with a payload", err)
			}
			return
		}
		if len(got) > max {
			t.Fatalf("frame of %d bytes accepted with limit %d", len(got), max)
		}
		// The payload is the bytes right after the header, whatever the
		// header's encoding (ReadUvarint accepts non-minimal ones).
		consumed := len(data) - r.Buffered()
		if !bytes.Equal(data[consumed-len(got):consumed], got) {
			t.Fatalf("payload %q is not the bytes before offset %d", got, consumed)
		}
	})
}

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
	// the over-MaxFrame response under -race on a loaded machine cannot reset
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
	t.Run("response over MaxFrame is refused", func(t *testing.T) {
		err := Call(ctx, cli.Host(), srv.ID(), echoProto, echoReq{Big: MaxFrame + 1}, nil)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("invalid JSON request", func(t *testing.T) {
		s, err := cli.Host().NewStream(ctx, srv.ID(), echoProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := WriteFrame(s, []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		raw, err := ReadFrame(bufio.NewReader(s), MaxFrame)
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
