package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// streamLayer is raft's StreamLayer over libp2p streams of ProtocolRaft as
// the raft transport's client side sees it: a Dial by peer ID, and an
// Accept that yields nothing (the transport serves every inbound stream
// itself, serveStream, so that it knows which peer sent each RPC).
// Addresses are peer ID strings; the host dials them with the addresses in
// its peerstore, which discovery fills, so raft never needs an IP address
// or a port.
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

	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer returns the dialing stream layer of h. It registers no
// handler: newTransport does.
func newStreamLayer(h host.Host, dialTimeout time.Duration) *streamLayer {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamLayer{host: h, dialTimeout: dialTimeout, ctx: ctx, cancel: cancel}
}

// Accept blocks until Close: inbound streams reach raft through
// transport.serveStream, never through this listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	<-s.ctx.Done()
	return nil, net.ErrClosed
}

// Close ends Accept and every dial in progress.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(s.cancel)
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
	idle time.Duration // inbound: each Read must see a byte, each Write complete, within idle
}

// inboundIdle bounds how long an inbound raft stream may stay silent, or
// leave its answers unread (raft itself sets no deadline on the streams it
// serves): a peer that opens a stream, or sends half an RPC, and stops, or
// sends requests and never reads the answers, holds a goroutine at most
// this long. Pooled streams between live members carry heartbeats far more
// often.
const inboundIdle = 2 * time.Minute

// Read reads with the idle deadline of inbound streams. On an inbound
// stream, a reset (its member closed the conn: Close resets, by design) and
// this node's own closing of the connection read as the stream's end
// (io.EOF): raft logs any other read error as "failed to decode incoming
// command" at ERROR, which every member's routine close and every graceful
// stop did (a chaos run's logs held 240 such lines). A reset in the middle
// of an RPC still fails its decoding (an unexpected EOF); a lost connection
// (a keepalive timeout, a reset TCP connection) is still an error.
func (c *streamConn) Read(b []byte) (int, error) {
	if c.idle <= 0 {
		return c.Stream.Read(b)
	}
	_ = c.Stream.SetReadDeadline(time.Now().Add(c.idle))
	n, err := c.Stream.Read(b)
	if err != nil && closedAtItsEnd(err) {
		err = io.EOF
	}
	return n, err
}

// closedAtItsEnd reports whether a read error of an inbound raft stream is
// a close rather than a failure: a stream reset (by the member, or by this
// node as its transport stops) or this node's own close of the connection.
func closedAtItsEnd(err error) bool {
	if _, ok := errors.AsType[*network.StreamError](err); ok {
		return true
	}
	ce, ok := errors.AsType[*network.ConnError](err)
	return ok && !ce.Remote
}

// Write writes with the idle deadline of inbound streams: without it, a
// peer that pipelines requests and never reads the answers blocks raft's
// handler in Write once the stream's window is full, where the read
// deadline never fires.
func (c *streamConn) Write(b []byte) (int, error) {
	if c.idle > 0 {
		_ = c.Stream.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Stream.Write(b)
}

func (c *streamConn) Close() error         { return c.Stream.Reset() }
func (c *streamConn) LocalAddr() net.Addr  { return peerAddr(c.Stream.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return peerAddr(c.Stream.Conn().RemotePeer()) }

// servedConn is an inbound stream handed to raft's server code; ended is
// closed when raft closes it (its handler returned).
type servedConn struct {
	*streamConn
	once  sync.Once
	ended chan struct{}
}

func (c *servedConn) Close() error {
	c.once.Do(func() { close(c.ended) })
	return c.streamConn.Close()
}

// oneStream is the listener of the NetworkTransport that serves one inbound
// stream (serveStream): Accept yields that stream once, then blocks until
// Close. It dials nothing.
type oneStream struct {
	conn  chan net.Conn // holds the stream until Accept takes it
	local net.Addr
	done  chan struct{}
	once  sync.Once
}

var _ raft.StreamLayer = (*oneStream)(nil)

func (l *oneStream) Accept() (net.Conn, error) {
	select {
	case c := <-l.conn:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneStream) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneStream) Addr() net.Addr { return l.local }

func (l *oneStream) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	return nil, errors.New("the server of one inbound raft stream dials nothing")
}

// transport is raft's NetworkTransport over the stream layer, with two
// additions: it serves each inbound stream itself, with raft's own server
// code, so that every RPC is checked against the peer that libp2p
// authenticated (serveStream, check); and inject hands raft an RPC
// as if a peer had sent it (fast failover's TimeoutNow, fastfail.go).
// Everything else is the embedded NetworkTransport's.
type transport struct {
	*raft.NetworkTransport // implements raft.WithPreVote: pre-vote is on
	host                   host.Host
	allow                  func(peer.ID) bool
	log                    *slog.Logger
	netLog                 hclog.Logger
	idle                   atomic.Int64 // inbound streams' idle deadline (ns): inboundIdle; tests shorten it
	rpcCh                  chan raft.RPC
	done                   chan struct{}
	once                   sync.Once
	answered               sync.Map // raft.ServerID → *answers: its answers to this node's AppendEntries
	hbMu                   sync.Mutex
	heartbeat              func(raft.RPC) // raft's fast path for heartbeats (SetHeartbeatHandler)
}

// AppendEntries sends one AppendEntries (a heartbeat, or entries outside
// the pipeline) and notes the peer's answer (answers.note): on the leader,
// a heartbeat answered is evidence that the peer's raft is alive and heard
// the leader then, which autopilot uses instead of a stats call while the
// cluster is quiet (autopilot.go), and an answer that shows the peer holds
// what it was sent is what a removal's quorum check counts (lastCaughtUp).
func (t *transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	t.answersFor(id).noteResult(args, resp, err, time.Now())
	return err
}

// raft enables pre-vote only for a transport that can carry it; the silence
// watch relies on it (silence.go).
var _ raft.WithPreVote = (*transport)(nil)

// newTransport builds raft's network transport on top of the stream layer;
// listen then serves ProtocolRaft on h. Connections are pooled per peer (3 per
// peer); every RPC gets the given I/O deadline, and a dial at most dial.
// allow says which peers may send raft RPCs at all: streams of others are
// reset before a byte of them is read, and every RPC is checked again
// (check).
func newTransport(h host.Host, timeout, dial time.Duration, allow func(peer.ID) bool, log *slog.Logger) *transport {
	netLog := newHCLogger(log.With("component", "raft-transport"), "raft-net")
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  newStreamLayer(h, dial),
		MaxPool: 3,
		Timeout: timeout,
		Logger:  netLog,
	})
	t := &transport{NetworkTransport: nt, host: h, rpcCh: make(chan raft.RPC), done: make(chan struct{}), allow: allow, log: log, netLog: netLog}
	t.idle.Store(int64(inboundIdle))
	return t
}

// listen serves ProtocolRaft on the host. New calls it once raft exists:
// allow (mayRaft) reads raft's configuration, so a stream served before
// then, while the node replays its log at a restart, dereferenced a raft
// not yet made; a peer that opens one meanwhile is told the protocol is not
// supported, and raft's own dials are retried.
func (t *transport) listen() { t.host.SetStreamHandler(ProtocolRaft, t.handleStream) }

// handleStream serves one inbound raft stream: from a peer allow refuses
// (not a member, or a worker, which never sends raft RPCs) it is reset
// before a byte of it is read (hashicorp/raft itself checks only vote
// requests against the configuration).
func (t *transport) handleStream(st network.Stream) {
	if t.allow != nil && !t.allow(st.Conn().RemotePeer()) {
		_ = st.Reset()
		return
	}
	select {
	case <-t.done:
		_ = st.Reset()
		return
	default:
	}
	t.serveStream(&streamConn{Stream: st, idle: time.Duration(t.idle.Load())})
}

// serveStream runs hashicorp/raft's server code on one inbound stream — a
// NetworkTransport whose listener yields this stream only — and hands the
// RPCs it decodes to raft after check: an RPC carries only the sender's
// claim of who it is, and this is how each one is tied to the peer libp2p
// authenticated. It returns when raft has closed the stream or the
// transport closes.
func (t *transport) serveStream(c *streamConn) {
	from := c.Stream.Conn().RemotePeer()
	sc := &servedConn{streamConn: c, ended: make(chan struct{})}
	l := &oneStream{conn: make(chan net.Conn, 1), local: c.LocalAddr(), done: make(chan struct{})}
	l.conn <- sc
	in := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: l, Logger: t.netLog})
	defer sc.Close() // also when raft never took it: the transport closed first
	defer in.Close()
	in.SetHeartbeatHandler(func(rpc raft.RPC) { t.deliver(from, rpc, true) })
	for {
		select {
		case rpc := <-in.Consumer():
			t.deliver(from, rpc, false)
		case <-sc.ended:
			return
		case <-t.done:
			return
		}
	}
}

// deliver hands raft one RPC that from sent, or refuses it (check).
// Heartbeats take raft's fast path when raft set one.
func (t *transport) deliver(from peer.ID, rpc raft.RPC, heartbeat bool) {
	if err := t.check(from, rpc.Command); err != nil {
		t.log.Warn("refused a raft RPC", "peer", from, "err", err)
		rpc.Respond(nil, err)
		return
	}
	if heartbeat {
		t.hbMu.Lock()
		fn := t.heartbeat
		t.hbMu.Unlock()
		if fn != nil {
			fn(rpc)
			return
		}
	}
	select {
	case t.rpcCh <- rpc:
	case <-t.done:
		rpc.Respond(nil, errTransportClosed)
	}
}

// SetHeartbeatHandler keeps raft's fast path for heartbeats; deliver calls
// it after check, as it does for every other RPC.
func (t *transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	t.heartbeat = cb
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

// Close stops serving raft streams (those being served end) and closes the
// network transport.
func (t *transport) Close() error {
	t.once.Do(func() {
		t.host.RemoveStreamHandler(ProtocolRaft)
		close(t.done)
	})
	return t.NetworkTransport.Close()
}

// errBadRPC is the answer to a raft RPC the transport refused.
var errBadRPC = errors.New("raft RPC refused")

// check validates one inbound RPC from the authenticated peer from, for
// what raft would panic on or trust blindly. Every raft RPC is one that
// only a leader or a candidate sends (raft's appendEntries and
// installSnapshot do not check the sender against the configuration, and
// timeoutNow checks nothing), so from must be a peer allow admits (a
// member, never a worker; not necessarily a server of the local
// configuration, which a lagging follower may not have caught up on), and
// every sender identity the RPC claims (the header's ID and Addr, the
// older Leader and Candidate fields), which raft takes for the leader's or
// the candidate's, must be from itself. Every configuration an RPC carries
// must decode (raft's DecodeConfiguration panics on a malformed one and
// takes the node down), and every log entry must be there (msgpack decodes
// a nil into a nil *raft.Log, and raft reads each entry's index).
func (t *transport) check(from peer.ID, cmd any) error {
	var hdr raft.RPCHeader
	var claims [][]byte // the older fields raft reads when the header has no Addr
	switch c := cmd.(type) {
	case *raft.AppendEntriesRequest:
		hdr, claims = c.RPCHeader, [][]byte{c.Leader}
		for i, e := range c.Entries {
			if e == nil { // msgpack nil: raft reads every entry's index and would panic
				return fmt.Errorf("%w: append entries: entry %d of %d is nil", errBadRPC, i, len(c.Entries))
			}
			if e.Type == raft.LogConfiguration {
				if err := decodeConfigurationSafely(e.Data); err != nil {
					return fmt.Errorf("%w: append entries: %v", errBadRPC, err)
				}
			}
		}
	case *raft.InstallSnapshotRequest:
		hdr, claims = c.RPCHeader, [][]byte{c.Leader}
		if c.SnapshotVersion > 0 || len(c.Configuration) > 0 {
			if err := decodeConfigurationSafely(c.Configuration); err != nil {
				return fmt.Errorf("%w: install snapshot: %v", errBadRPC, err)
			}
		}
	case *raft.RequestVoteRequest:
		hdr, claims = c.RPCHeader, [][]byte{c.Candidate}
	case *raft.RequestPreVoteRequest:
		hdr = c.RPCHeader
	case *raft.TimeoutNowRequest:
		hdr = c.RPCHeader
	default:
		return fmt.Errorf("%w: unknown RPC %T", errBadRPC, cmd)
	}
	claims = append(claims, hdr.ID, hdr.Addr)
	claimed := false
	for _, c := range claims {
		if len(c) == 0 {
			continue
		}
		claimed = true
		if string(c) != from.String() {
			return fmt.Errorf("%w: the stream is from %s, the RPC claims to be from %q", errBadRPC, from, c)
		}
	}
	if !claimed {
		return fmt.Errorf("%w: the RPC from %s names no sender", errBadRPC, from)
	}
	if t.allow != nil && !t.allow(from) {
		return fmt.Errorf("%w: %s is not a member that may lead or vote", errBadRPC, from)
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
