package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// MaxFrame is the largest frame any Hydra protocol accepts unless a handler
// asks for less. Chunk results are split well below it (docs/design.md §2), so a
// peer that announces more is broken or hostile and is cut off.
const MaxFrame = 8 << 20

// ErrFrameTooLarge is returned when a frame's announced length exceeds the
// reader's limit; the stream must then be reset, as its framing is lost.
var ErrFrameTooLarge = errors.New("frame too large")

// WriteFrame writes payload as one frame: a uvarint length then the bytes.
// One frame is one message; the framing is the same for every protocol so
// that one fuzzed decoder guards them all.
func WriteFrame(w io.Writer, payload []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame body: %w", err)
	}
	return nil
}

// FrameReader is what ReadFrame needs: a *bufio.Reader around a stream.
type FrameReader interface {
	io.Reader
	io.ByteReader
}

// ReadFrame reads one frame written by WriteFrame, refusing frames longer
// than max bytes before allocating anything for them.
func ReadFrame(r FrameReader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n <= eagerFrame {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("read frame body (%d bytes): %w", n, err)
		}
		return buf, nil
	}
	// A large frame grows with the bytes that actually arrive: a peer that
	// announces megabytes and sends nothing costs us nothing.
	var buf bytes.Buffer
	buf.Grow(eagerFrame)
	got, err := io.Copy(&buf, io.LimitReader(r, int64(n)))
	if err == nil && uint64(got) < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("read frame body (%d of %d bytes): %w", got, n, err)
	}
	return buf.Bytes(), nil
}

// eagerFrame is the largest frame ReadFrame allocates in full before its
// body arrives; longer ones are read incrementally.
const eagerFrame = 64 << 10

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
// is always closed or reset before Call returns.
func Call(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req, resp any) error {
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
	if err := WriteFrame(s, body); err != nil {
		return fmt.Errorf("%s to %s: %w", proto, p, err)
	}
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("%s to %s: close write: %w", proto, p, err)
	}
	raw, err := ReadFrame(bufio.NewReader(s), MaxFrame)
	if err != nil {
		return fmt.Errorf("%s from %s: %w", proto, p, err)
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
		raw, err := ReadFrame(bufio.NewReader(s), max)
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
		if err := WriteFrame(s, out); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}
