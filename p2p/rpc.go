package p2p

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/hydra-compute/hydra/wire"
)

// envelope is the response frame of Call/Serve: either Data or Error.
type envelope struct {
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
}

// RemoteError is an error the remote handler returned, as opposed to a
// transport failure; callers use errors.As to tell the two apart (a remote
// "not leader" is worth retrying elsewhere, a reset stream is worth retrying
// on the same peer).
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "remote: " + e.Msg }

// DefaultCallTimeout bounds a Call whose context has no deadline, so a peer
// that accepts a stream and never answers cannot hold a goroutine forever.
const DefaultCallTimeout = 10 * time.Second

// Call sends req (JSON) on a new stream of protocol proto to peer p and
// decodes the single response frame into resp (which may be nil). The stream
// is always closed or reset before Call returns. The response frame may be
// as long as wire.MaxStreamFrame: a caller that asks a peer it does not
// trust (a stranger found on the LAN) bounds it with CallLimit.
func Call(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req, resp any) error {
	return CallLimit(ctx, h, p, proto, wire.MaxStreamFrame, req, resp)
}

// CallLimit is Call with the response frame bounded by limit bytes: a longer
// one fails the call (wrapping wire.ErrFrameTooLarge) before a byte of its
// body is read. Decoding multiplies what a frame costs (each "{}," of a list
// of structs is a whole struct), so the bound is that of the answers the
// protocol really gives, not the largest frame a stream may carry.
func CallLimit(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, limit int, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", proto, err)
	}
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return fmt.Errorf("open %s to %s: %w", proto, p, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Reset()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		_ = s.SetDeadline(dl)
	}
	// A cancelled context ends the call at once, not at its deadline: the deadline bounds reads
	// and writes, but a caller that gives up early (a worker whose leader changed while the old
	// one, suspended, keeps its connection open and never answers) must not wait for it.
	stopReset := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stopReset()
	fail := func(format string, err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		return fmt.Errorf(format, proto, p, err)
	}
	// The answer decides, not how the request went out: a server may answer and close before this
	// side has closed its half (Serve reads the one frame it needs, answers and closes, and over
	// QUIC a close stops the peer's sending), so a failed write or close of the request is an
	// error only if no answer comes. A call on a loaded machine whose goroutine paused between its
	// write and its close failed with "close called for canceled stream", its answer unread.
	werr := wire.WriteFrame(s, body)
	if werr == nil {
		if err := s.CloseWrite(); err != nil {
			werr = fmt.Errorf("close write: %w", err)
		}
	}
	raw, err := wire.ReadFrame(bufio.NewReader(s), limit)
	if err != nil {
		if werr != nil {
			return fail("%s to %s: %w", werr)
		}
		return fail("%s from %s: %w", err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s from %s: decode response: %w", proto, p, err)
	}
	ok = true
	_ = s.Close()
	if env.Error != "" {
		return &RemoteError{Msg: env.Error}
	}
	if resp != nil {
		if err := json.Unmarshal(env.Data, resp); err != nil {
			return fmt.Errorf("%s from %s: decode response data: %w", proto, p, err)
		}
	}
	return nil
}

// Handler answers one request of a Serve protocol. It returns the response
// value (encoded as JSON) or an error whose text is sent to the caller.
type Handler func(ctx context.Context, from peer.ID, req json.RawMessage) (any, error)

// Serve registers handler for proto on h: each stream carries one request
// frame of at most max bytes and gets one response frame. Malformed input is
// answered with an error or a reset, never a panic. The handler's context is
// cancelled after timeout.
func Serve(h host.Host, proto protocol.ID, max int, timeout time.Duration, log *slog.Logger, handler Handler) {
	ServeAllowed(h, proto, max, timeout, log, nil, handler)
}

// ServeAllowed is Serve for a protocol that only some peers may use: a
// stream from a peer for which allow returns false is reset before a byte
// of it is read (membership checks: docs/security.md). A nil allow admits
// everyone.
func ServeAllowed(h host.Host, proto protocol.ID, max int, timeout time.Duration, log *slog.Logger, allow func(peer.ID) bool, handler Handler) {
	h.SetStreamHandler(proto, func(s network.Stream) {
		if allow != nil && !allow(s.Conn().RemotePeer()) {
			log.Debug("refused stream from a non-member", "proto", proto, "peer", s.Conn().RemotePeer())
			_ = s.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = s.SetDeadline(time.Now().Add(timeout))
		raw, err := wire.ReadFrame(bufio.NewReader(s), max)
		if err != nil {
			log.Debug("bad request frame", "proto", proto, "peer", s.Conn().RemotePeer(), "err", err)
			_ = s.Reset()
			return
		}
		var env envelope
		data, herr := func() (v any, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("internal error")
					log.Error("handler panic", "proto", proto, "panic", r)
				}
			}()
			if !json.Valid(raw) {
				return nil, errors.New("request is not valid JSON")
			}
			return handler(ctx, s.Conn().RemotePeer(), raw)
		}()
		if herr != nil {
			env.Error = herr.Error()
		} else if data != nil {
			b, err := json.Marshal(data)
			if err != nil {
				env.Error = "encode response: " + err.Error()
			} else {
				env.Data = b
			}
		}
		out, _ := json.Marshal(env)
		if err := wire.WriteFrame(s, out); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}
