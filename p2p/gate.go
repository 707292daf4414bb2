package p2p

import (
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// Access is how this node treats a peer, as the membership layer decides
// (docs/security.md): members talk every Hydra protocol, outsiders only the
// join/approval protocols, refused peers (evicted or denied keys) nothing.
type Access int

const (
	// AccessOutsider is a peer that is not a member: it may connect and ask
	// to join, and every other Hydra protocol refuses it.
	AccessOutsider Access = iota
	// AccessMember is an admitted member of the cluster.
	AccessMember
	// AccessRefused is an evicted or denied key: its connections are
	// refused on every transport.
	AccessRefused
)

// AccessFunc classifies a peer; it must be cheap (it runs on every
// connection and every inbound stream) and safe for concurrent use.
type AccessFunc func(peer.ID) Access

// gate is the host's libp2p connection gater: it refuses connections from
// and to refused peers, after the security handshake has authenticated the
// key, on TCP and QUIC alike (the gater runs in the swarm, below both).
// Until SetAccess is called every peer is an outsider.
type gate struct {
	fn      atomic.Pointer[AccessFunc]
	refused atomic.Uint64 // connections refused, for tests and metrics
	// gossipDropped counts gossip messages from non-members (validateGossip).
	gossipDropped atomic.Uint64
	// peers lists the peers with an open inbound connection (inboundPeers
	// of the swarm), set once the host exists: the outsider cap counts
	// them. Peers this node dialled do not count.
	peers atomic.Pointer[func() []peer.ID]
	// maxOutsiders caps the peers that are not members connected inbound
	// at once (MaxOutsiderPeers unless a test sets it).
	maxOutsiders int
}

// MaxOutsiderPeers bounds how many peers that are not members (strangers
// asking to join, a fresh LAN's nodes before they form a cluster) may hold
// inbound connections at once; a new one beyond it is refused after the
// handshake until one leaves. Handshakes in progress are bounded by the
// resource manager's transient scope (limits.go), members never count.
const MaxOutsiderPeers = 128

func (g *gate) access(p peer.ID) Access {
	if f := g.fn.Load(); f != nil {
		return (*f)(p)
	}
	return AccessOutsider
}

func (g *gate) InterceptPeerDial(p peer.ID) bool { return g.allow(p) }
func (g *gate) InterceptAddrDial(peer.ID, multiaddr.Multiaddr) bool {
	return true
}
func (g *gate) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (g *gate) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if !g.allow(p) {
		return false
	}
	if dir == network.DirInbound && g.access(p) == AccessOutsider && g.outsidersFull(p) {
		g.refused.Add(1)
		return false
	}
	return true
}

// outsidersFull reports whether the outsider peers connected inbound now (p
// aside: a second connection of a connected peer is no new peer) reach the
// cap.
func (g *gate) outsidersFull(p peer.ID) bool {
	f := g.peers.Load()
	if f == nil {
		return false
	}
	limit := g.maxOutsiders
	if limit <= 0 {
		limit = MaxOutsiderPeers
	}
	n := 0
	for _, q := range (*f)() {
		if q != p && g.access(q) == AccessOutsider {
			if n++; n >= limit {
				return true
			}
		}
	}
	return false
}

// inboundPeers lists the peers with at least one open inbound connection,
// each once.
func inboundPeers(n network.Network) []peer.ID {
	var out []peer.ID
	seen := map[peer.ID]bool{}
	for _, c := range n.Conns() {
		if p := c.RemotePeer(); c.Stat().Direction == network.DirInbound && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func (g *gate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func (g *gate) allow(p peer.ID) bool {
	if g.access(p) == AccessRefused {
		g.refused.Add(1)
		return false
	}
	return true
}

// SetAccess installs the membership layer's classification of peers: the
// connection gater then refuses AccessRefused peers, and every handler that
// asks IsMember (or ServeAllowed's allow) refuses non-members. Peers already
// connected that fn refuses are disconnected by Refuse, not by SetAccess.
func (h *Host) SetAccess(fn AccessFunc) { h.gate.fn.Store(&fn) }

// Access classifies p with the function given to SetAccess.
func (h *Host) Access(p peer.ID) Access { return h.gate.access(p) }

// IsMember reports whether p is an admitted member (a Serve check).
func (h *Host) IsMember(p peer.ID) bool { return h.gate.access(p) == AccessMember }

// Refuse closes every connection to p now; the gater refuses new ones as
// long as the access function says AccessRefused.
func (h *Host) Refuse(p peer.ID) {
	_ = h.h.Network().ClosePeer(p)
}

// RefusedConns counts connections the gater refused since the host started.
func (h *Host) RefusedConns() uint64 { return h.gate.refused.Load() }
