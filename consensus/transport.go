package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// streamLayer is raft's StreamLayer over libp2p streams of ProtocolRaft: a
// net.Listener of inbound streams and a Dial by peer ID. Addresses are peer
// ID strings; the host dials them with the addresses in its peerstore, which
// discovery fills, so raft never needs an IP address or a port.
//
// Every stream is reset, never half-closed, when raft closes its conn:
// raft closes a conn after an error or when its pool is full, and a
// half-closed stream to a dead peer whose connection still looks alive (a
// QUIC connection to a killed process, a TCP one over a pulled cable) keeps
// its resource-manager reservation until the remote acknowledges, which it
// never does; vote requests and heartbeats to such a peer would then
// exhaust the protocol's stream budget ("cannot reserve outbound stream")
// and keep the survivors from electing a leader. A dial waits at most
// dialTimeout (libp2p negotiates the protocol inside it).
type streamLayer struct {
	host        host.Host
	dialTimeout time.Duration
	allow       func(peer.ID) bool

	ch        chan network.Stream
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer registers the raft protocol handler on h. Streams from
// peers that allow refuses (not members: hashicorp/raft itself checks only
// vote requests against the configuration) are reset before a byte of them
// is read.
func newStreamLayer(h host.Host, dialTimeout time.Duration, allow func(peer.ID) bool) *streamLayer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamLayer{host: h, dialTimeout: dialTimeout, allow: allow, ch: make(chan network.Stream), ctx: ctx, cancel: cancel}
	h.SetStreamHandler(ProtocolRaft, func(st network.Stream) {
		if allow != nil && !allow(st.Conn().RemotePeer()) {
			_ = st.Reset()
			return
		}
		select {
		case s.ch <- st:
		case <-ctx.Done():
			_ = st.Reset()
		}
	})
	return s
}

// Accept returns the next inbound raft stream as a net.Conn.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case st := <-s.ch:
		return &streamConn{Stream: st, idle: inboundIdle}, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting raft streams.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.host.RemoveStreamHandler(ProtocolRaft)
		s.cancel()
	})
	return nil
}

// Addr is this node's raft address: its peer ID.
func (s *streamLayer) Addr() net.Addr { return peerAddr(s.host.ID()) }

// Dial opens a raft stream to the peer whose ID is address.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft address %q is not a peer ID: %w", address, err)
	}
	if timeout <= 0 || timeout > s.dialTimeout {
		timeout = s.dialTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	st, err := s.host.NewStream(ctx, pid, ProtocolRaft)
	if err != nil {
		return nil, fmt.Errorf("dial raft %s: %w", pid, err)
	}
	return &streamConn{Stream: st}, nil
}

// peerAddr is a peer ID as a net.Addr.
type peerAddr peer.ID

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return peer.ID(a).String() }

// streamConn is a libp2p stream as a net.Conn whose Close resets it (see
// streamLayer): raft's RPCs are request/response, so by the time raft
// closes a conn nothing is in flight that a reset could lose.
type streamConn struct {
	network.Stream
	idle time.Duration // inbound: each Read must see a byte within idle
}

// inboundIdle bounds how long an inbound raft stream may stay silent (raft
// itself sets no deadline on the streams it serves): a peer that opens a
// stream, or sends half an RPC, and stops holds a goroutine at most this
// long. Pooled streams between live members carry heartbeats far more often.
const inboundIdle = 2 * time.Minute

// Read reads with the idle deadline of inbound streams.
func (c *streamConn) Read(b []byte) (int, error) {
	if c.idle > 0 {
		_ = c.Stream.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Stream.Read(b)
}

func (c *streamConn) Close() error         { return c.Stream.Reset() }
func (c *streamConn) LocalAddr() net.Addr  { return peerAddr(c.Stream.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return peerAddr(c.Stream.Conn().RemotePeer()) }

// transport is raft's NetworkTransport over the stream layer, with one
// addition: inject hands raft an RPC as if a peer had sent it (fast
// failover's TimeoutNow, fastfail.go). Everything else is the embedded
// NetworkTransport's.
type transport struct {
	*raft.NetworkTransport // implements raft.WithPreVote: pre-vote is on
	allow                  func(peer.ID) bool
	log                    *slog.Logger
	rpcCh                  chan raft.RPC
	done                   chan struct{}
	once                   sync.Once
	answered               sync.Map // raft.ServerID → *atomic.Int64: last AppendEntries answer (unix ns)
}

// AppendEntries sends one AppendEntries (a heartbeat, or entries outside
// the pipeline) and notes when the peer answered: on the leader, a
// heartbeat answered is evidence that the peer's raft is alive and heard
// the leader then, which autopilot uses instead of a stats call while the
// cluster is quiet (autopilot.go).
func (t *transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		v, ok := t.answered.Load(id)
		if !ok {
			v, _ = t.answered.LoadOrStore(id, new(atomic.Int64))
		}
		v.(*atomic.Int64).Store(time.Now().UnixNano())
	}
	return err
}

// lastAnswer is when id last answered an AppendEntries of this node (zero:
// never).
func (t *transport) lastAnswer(id raft.ServerID) time.Time {
	v, ok := t.answered.Load(id)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*atomic.Int64).Load())
}

// raft enables pre-vote only for a transport that can carry it; the silence
// watch relies on it (silence.go).
var _ raft.WithPreVote = (*transport)(nil)

// newTransport builds raft's network transport on top of the stream layer.
// Connections are pooled per peer (3 per peer); every RPC gets the given I/O
// deadline, and a dial at most rpc.
func newTransport(h host.Host, timeout, dial time.Duration, allow func(peer.ID) bool, log *slog.Logger) *transport {
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  newStreamLayer(h, dial, allow),
		MaxPool: 3,
		Timeout: timeout,
		Logger:  newHCLogger(log.With("component", "raft-transport"), "raft-net"),
	})
	t := &transport{NetworkTransport: nt, rpcCh: make(chan raft.RPC), done: make(chan struct{}), allow: allow, log: log}
	go t.pump()
	return t
}

// pump hands raft the RPCs of the network, after checking what raft would
// panic on or trust blindly: the sender's claimed ID must be a member, and
// every configuration an RPC carries must decode (raft's
// DecodeConfiguration panics on a malformed one and takes the node down).
func (t *transport) pump() {
	in := t.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			if err := t.check(rpc.Command); err != nil {
				t.log.Warn("refused a raft RPC", "err", err)
				rpc.Respond(nil, err)
				continue
			}
			select {
			case t.rpcCh <- rpc:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

// Consumer is the channel raft reads its inbound RPCs from: the network's
// and the injected ones.
func (t *transport) Consumer() <-chan raft.RPC { return t.rpcCh }

// errTransportClosed is returned by inject after Close.
var errTransportClosed = errors.New("raft transport closed")

// inject delivers cmd to the local raft as an inbound RPC and waits for
// its response (or ctx).
func (t *transport) inject(ctx context.Context, cmd any) (any, error) {
	resp := make(chan raft.RPCResponse, 1)
	select {
	case t.rpcCh <- raft.RPC{Command: cmd, RespChan: resp}:
	case <-t.done:
		return nil, errTransportClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-resp:
		return r.Response, r.Error
	case <-t.done:
		return nil, errTransportClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the pump and the network transport.
func (t *transport) Close() error {
	t.once.Do(func() { close(t.done) })
	return t.NetworkTransport.Close()
}

// errBadRPC is the answer to a raft RPC the transport refused.
var errBadRPC = errors.New("raft RPC refused")

// check validates one inbound RPC (see pump).
func (t *transport) check(cmd any) error {
	var hdr raft.RPCHeader
	switch c := cmd.(type) {
	case *raft.AppendEntriesRequest:
		hdr = c.RPCHeader
		for _, e := range c.Entries {
			if e.Type == raft.LogConfiguration {
				if err := decodeConfigurationSafely(e.Data); err != nil {
					return fmt.Errorf("%w: append entries: %v", errBadRPC, err)
				}
			}
		}
	case *raft.InstallSnapshotRequest:
		hdr = c.RPCHeader
		if c.SnapshotVersion > 0 || len(c.Configuration) > 0 {
			if err := decodeConfigurationSafely(c.Configuration); err != nil {
				return fmt.Errorf("%w: install snapshot: %v", errBadRPC, err)
			}
		}
	case *raft.RequestVoteRequest:
		hdr = c.RPCHeader
	case *raft.RequestPreVoteRequest:
		hdr = c.RPCHeader
	case *raft.TimeoutNowRequest:
		hdr = c.RPCHeader
	default:
		return nil
	}
	if t.allow == nil {
		return nil
	}
	id := string(hdr.ID)
	if id == "" {
		id = string(hdr.Addr)
	}
	p, err := peer.Decode(id)
	if err != nil || !t.allow(p) {
		return fmt.Errorf("%w: sender %q is not a member", errBadRPC, id)
	}
	return nil
}

// decodeConfigurationSafely decodes an encoded raft configuration the way
// raft will, turning its panic into an error, and checks the servers.
func decodeConfigurationSafely(b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed configuration: %v", r)
		}
	}()
	c := raft.DecodeConfiguration(b)
	if len(c.Servers) == 0 {
		return errors.New("empty configuration")
	}
	for _, s := range c.Servers {
		if _, err := peer.Decode(string(s.ID)); err != nil {
			return fmt.Errorf("server %q is not a peer ID", s.ID)
		}
	}
	return nil
}
