package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
)

// streamLayer is raft's StreamLayer over libp2p streams of ProtocolRaft
// (gostream gives net.Listener and net.Conn over streams). Addresses are peer
// ID strings; the host dials them with the addresses in its peerstore, which
// discovery fills, so raft never needs an IP address or a port.
type streamLayer struct {
	host host.Host
	net.Listener
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer registers the raft protocol handler on h.
func newStreamLayer(h host.Host) (*streamLayer, error) {
	l, err := gostream.Listen(h, ProtocolRaft)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", ProtocolRaft, err)
	}
	return &streamLayer{host: h, Listener: l}, nil
}

// Dial opens a raft stream to the peer whose ID is address.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft address %q is not a peer ID: %w", address, err)
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := gostream.Dial(ctx, s.host, pid, ProtocolRaft)
	if err != nil {
		return nil, fmt.Errorf("dial raft %s: %w", pid, err)
	}
	return c, nil
}

// newTransport builds raft's network transport on top of the stream layer.
// Connections are pooled per peer; every RPC gets the given I/O timeout.
func newTransport(h host.Host, timeout time.Duration, log *slog.Logger) (*raft.NetworkTransport, error) {
	sl, err := newStreamLayer(h)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: timeout,
		Logger:  newHCLogger(log.With("component", "raft-transport"), "raft-net"),
	}), nil
}
