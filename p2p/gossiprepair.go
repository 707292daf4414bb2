package p2p

import (
	"context"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"
)

// Gossip repair.
//
// gossipsub keeps one outbound stream per peer. When that stream dies while
// the peer is still connected (a node restarted with the same identity
// before the survivors noticed its old connection was dead: SIGKILL, a
// crash, a QUIC connection that lingers), it opens a new one after a
// backoff, and after four such respawns for one peer within ten minutes it
// gives up: the peer stays connected but is sent nothing more, until every
// connection to it closes. A node restarted a few times in a row (a laptop,
// a crash loop, the failover benchmarks) then looks offline to the others
// for good and hears none of their announcements, although raft works over
// the same connection.
//
// The same restart also loses the peer's subscriptions: the survivor
// forgets them when the old stream dies, respawns its writer, but the new
// process sent its subscriptions once, on its own stream, before that: the
// survivor never sends it a message of those topics again. A peer that
// moved (moved.go) is the same case: its new connection came first, and
// when the probe closes the old one the survivor forgets the subscriptions
// the peer sent on the new one.
//
// So the host traces the router's outbound streams (outboundTracer) and
// checks every gossipRepairEvery that each connected member that speaks
// gossipsub has one and is subscribed to one of this node's topics (every
// Hydra node subscribes to the announcements). One that is not, at two
// checks in a row, is disconnected and redialled: the new connection makes
// both routers open fresh streams and send their subscriptions again. A
// peer is reconnected again only once it was well in between, or was
// connected anew (restarted again), or after gossipRepairBackoff: a peer
// that never subscribes costs a reconnection a minute, not a loop.
//
// A peer one of whose connections closed while another stays open (a
// probe closed a moved peer's stale one, a restarted peer's old process
// went) may have lost its streams with it: each closed connection asks for
// its peer (askRepair), and the repair looks at a connected one every
// repairSoonEvery for repairSoonFor and reconnects it the first time it is
// not sent this node's topics, instead of after two periodic checks (5 to
// 10 s more before a moved or restarted node's announcements were heard).
const (
	gossipRepairEvery   = 5 * time.Second
	gossipRepairBackoff = time.Minute
	gossipRedialTimeout = 10 * time.Second
	repairSoonEvery     = time.Second
	repairSoonFor       = 3 * time.Second
)

// repairMark is a reconnection done: when, and the connections it made.
type repairMark struct {
	at    time.Time
	conns []network.Conn
}

// repairGossip runs until the host closes (see Gossip repair).
func (h *Host) repairGossip(out *outboundTracer) {
	t := time.NewTicker(h.repairEvery)
	defer t.Stop()
	missing := map[peer.ID]int{}
	repaired := map[peer.ID]repairMark{}
	soon := map[peer.ID]time.Time{} // peers a probe cut off, watched until then
	var soonTick <-chan time.Time
	for {
		var deaf []peer.ID
		select {
		case <-h.ctx.Done():
			return
		case p := <-h.repairSoon:
			soon[p] = time.Now().Add(repairSoonFor)
			if soonTick == nil {
				soonTick = time.After(repairSoonEvery)
			}
			continue
		case <-soonTick:
			soonTick = nil
			deaf = h.cutOff(out, soon, repaired)
			if len(soon) > 0 {
				soonTick = time.After(repairSoonEvery)
			}
		case <-t.C:
			deaf = h.deafMembers(out, missing, repaired)
		}
		for _, p := range deaf {
			if _, ok := repaired[p]; ok {
				continue
			}
			delete(missing, p)
			delete(soon, p)
			repaired[p] = h.reconnect(out, p)
		}
	}
}

// reconnect disconnects p and dials it again, so that both routers open
// fresh streams and send their subscriptions.
func (h *Host) reconnect(out *outboundTracer, p peer.ID) repairMark {
	h.log.Info("gossip: a connected member is not sent this node's topics; reconnecting it", "peer", p,
		"stream", out.has(p))
	addrs := redialAddrs(h.h.Network(), h.h.Peerstore(), p)
	_ = h.h.Network().ClosePeer(p)
	ctx, cancel := context.WithTimeout(h.ctx, gossipRedialTimeout)
	defer cancel()
	if err := h.h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs}); err != nil {
		h.log.Debug("gossip: redial after repair", "peer", p, "err", err)
	}
	return repairMark{at: time.Now(), conns: h.h.Network().ConnsToPeer(p)}
}

// askRepair asks gossip repair to look at p soon: a connection to it
// closed, and gossipsub's streams on that connection with it. It never
// blocks (the swarm's notifications call it); a request that finds the
// queue full is dropped (the periodic checks remain).
func (h *Host) askRepair(p peer.ID) {
	select {
	case h.repairSoon <- p:
	default:
	}
}

// redialAddrs is where a peer about to be disconnected for repair can be
// dialled again: its addresses in the peerstore and the remote addresses of
// its open connections, taken before the close. The peerstore alone is not
// enough. On the last disconnect identify moves a peer's addresses to shorter
// TTLs asynchronously, so a redial that read the peerstore in that window
// found none. And when the old process of a restarted peer closes while the
// new one is connected, its last identify push (listen addresses: none)
// replaces every address the peerstore had for that identity, the new
// process's included. Either way the redial failed with "no addresses" and
// the peer, now disconnected, stayed deaf. A QUIC connection's remote
// address is the peer's listening socket, and so is a TCP connection's when
// the peer dialled from its listening port (libp2p reuses it by default).
func redialAddrs(n network.Network, ps peerstore.Peerstore, p peer.ID) []multiaddr.Multiaddr {
	addrs := ps.Addrs(p)
	for _, c := range n.ConnsToPeer(p) {
		if a := c.RemoteMultiaddr(); !slices.ContainsFunc(addrs, a.Equal) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// deafMembers returns the connected members that speak gossipsub but, at
// two checks in a row, had no outbound gossip stream or no subscription to
// any of this node's topics; missing counts the checks per peer.
func (h *Host) deafMembers(out *outboundTracer, missing map[peer.ID]int, repaired map[peer.ID]repairMark) []peer.ID {
	pruneRepaired(repaired)
	listed := h.listedPeers()
	if listed == nil {
		return nil
	}
	var res []peer.ID
	seen := map[peer.ID]bool{}
	for _, p := range h.h.Network().Peers() {
		if listed[p] && out.has(p) {
			delete(repaired, p)
			continue
		}
		if !h.gossipMember(p) {
			continue
		}
		seen[p] = true
		if missing[p]++; missing[p] >= 2 {
			res = append(res, p)
		}
	}
	for p := range missing {
		if !seen[p] {
			delete(missing, p)
		}
	}
	return res
}

// cutOff returns the peers of soon (see repairSoon) that are connected
// members speaking gossipsub and are not sent this node's topics now; it
// drops the peers whose watch ended.
func (h *Host) cutOff(out *outboundTracer, soon map[peer.ID]time.Time, repaired map[peer.ID]repairMark) []peer.ID {
	pruneRepaired(repaired)
	now := time.Now()
	for p, until := range soon {
		if now.After(until) {
			delete(soon, p)
		}
	}
	listed := h.listedPeers()
	if listed == nil {
		return nil
	}
	var res []peer.ID
	for p := range soon {
		if listed[p] && out.has(p) || h.h.Network().Connectedness(p) != network.Connected || !h.gossipMember(p) {
			continue
		}
		res = append(res, p)
	}
	return res
}

// pruneRepaired drops each repair mark whose connections are all closed or
// that is older than gossipRepairBackoff.
func pruneRepaired(repaired map[peer.ID]repairMark) {
	for p, m := range repaired {
		open := false
		for _, c := range m.conns {
			open = open || !c.IsClosed()
		}
		if !open || time.Since(m.at) >= gossipRepairBackoff {
			delete(repaired, p)
		}
	}
}

// listedPeers is the set of peers subscribed to one of this node's topics,
// as the router knows them; nil while there is nothing to check: no topic
// yet, or membership unknown (strangers and other clusters are connected
// too).
func (h *Host) listedPeers() map[peer.ID]bool {
	if h.gate.fn.Load() == nil {
		return nil
	}
	h.mu.Lock()
	topics := make([]*Topic, 0, len(h.topics))
	for _, t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.Unlock()
	if len(topics) == 0 {
		return nil
	}
	listed := map[peer.ID]bool{}
	for _, t := range topics {
		for _, p := range t.t.ListPeers() {
			listed[p] = true
		}
	}
	return listed
}

// gossipMember reports whether p is a member that speaks gossipsub: one
// gossip repair looks after.
func (h *Host) gossipMember(p peer.ID) bool {
	if !h.IsMember(p) {
		return false
	}
	ps, err := h.h.Peerstore().SupportsProtocols(p, pubsub.GossipSubDefaultProtocols...)
	return err == nil && len(ps) > 0
}

// outboundTracer is a pubsub.RawTracer that keeps the set of peers the
// router has an outbound stream to; every other event is ignored.
type outboundTracer struct {
	mu    sync.Mutex
	peers map[peer.ID]bool
}

var _ pubsub.RawTracer = (*outboundTracer)(nil)

func newOutboundTracer() *outboundTracer { return &outboundTracer{peers: map[peer.ID]bool{}} }

func (o *outboundTracer) has(p peer.ID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peers[p]
}

// OnNewOutboundStream records that the router can send to p.
func (o *outboundTracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	o.mu.Lock()
	o.peers[p] = true
	o.mu.Unlock()
}

// OnClosedOutboundStream records that the router can no longer send to p.
func (o *outboundTracer) OnClosedOutboundStream(p peer.ID) {
	o.mu.Lock()
	delete(o.peers, p)
	o.mu.Unlock()
}

// Join is ignored.
func (o *outboundTracer) Join(string) {}

// Leave is ignored.
func (o *outboundTracer) Leave(string) {}

// Graft is ignored.
func (o *outboundTracer) Graft(peer.ID, string) {}

// Prune is ignored.
func (o *outboundTracer) Prune(peer.ID, string) {}

// ValidateMessage is ignored.
func (o *outboundTracer) ValidateMessage(*pubsub.Message) {}

// DeliverMessage is ignored.
func (o *outboundTracer) DeliverMessage(*pubsub.Message) {}

// RejectMessage is ignored.
func (o *outboundTracer) RejectMessage(*pubsub.Message, string) {}

// DuplicateMessage is ignored.
func (o *outboundTracer) DuplicateMessage(*pubsub.Message) {}

// ThrottlePeer is ignored.
func (o *outboundTracer) ThrottlePeer(peer.ID) {}

// RecvRPC is ignored.
func (o *outboundTracer) RecvRPC(*pubsub.RPC) {}

// SendRPC is ignored.
func (o *outboundTracer) SendRPC(*pubsub.RPC, peer.ID) {}

// SendRPCCompleted is ignored.
func (o *outboundTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}

// DropRPC is ignored.
func (o *outboundTracer) DropRPC(*pubsub.RPC, peer.ID) {}

// UndeliverableMessage is ignored.
func (o *outboundTracer) UndeliverableMessage(*pubsub.Message) {}
