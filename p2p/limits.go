package p2p

import (
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p"
	coreconnmgr "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// ProtocolPrefix starts every Hydra protocol ID and the DHT's protocols.
const ProtocolPrefix = "/hydra"

// protoLimit is the resource-manager budget of one Hydra protocol: for the
// protocol as a whole (scaled with the machine's memory) and per peer.
type protoLimit struct {
	id       protocol.ID
	total    rcmgr.BaseLimit
	increase rcmgr.BaseLimitIncrease
	perPeer  rcmgr.BaseLimit
}

// hydraProtocolLimits lists the protocols of docs/internals.md with
// explicit budgets (docs/design.md §6). The numbers follow what each protocol
// does, not a benchmark:
//
//   - raft keeps a small pool of long-lived streams per server and opens
//     more when it pipelines or snapshots, so it gets the most streams;
//   - the cluster/* protocols are one request, one response, rare (a
//     readindex ask costs the leader a round of heartbeats);
//   - work carries chunks and results, one or two in flight per worker;
//   - module/get streams a WebAssembly module, rare and large;
//   - kad is the DHT, bursty during lookups.
//
// A protocol or a version missing here falls back to the defaults of
// rcmgr.DefaultLimits, which are sane but not tuned.
var hydraProtocolLimits = []protoLimit{
	{
		id:       "/hydra/raft/1.0.0",
		total:    rcmgr.BaseLimit{Streams: 1024, StreamsInbound: 512, StreamsOutbound: 512, Memory: 128 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 512, StreamsInbound: 256, StreamsOutbound: 256, Memory: 64 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 64, StreamsInbound: 32, StreamsOutbound: 32, Memory: 32 << 20},
	},
	outsiderRPCLimit("/hydra/cluster/info/1.0.0"),
	outsiderRPCLimit("/hydra/cluster/join/1.0.0"),
	clusterRPCLimit("/hydra/cluster/apply/1.0.0"),
	clusterRPCLimit("/hydra/cluster/stats/1.0.0"),
	clusterRPCLimit("/hydra/cluster/readindex/1.0.0"), // each ask costs the leader a round of heartbeats
	{
		id:       "/hydra/work/1.0.0",
		total:    rcmgr.BaseLimit{Streams: 1024, StreamsInbound: 512, StreamsOutbound: 512, Memory: 128 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 512, StreamsInbound: 256, StreamsOutbound: 256, Memory: 64 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 16, StreamsInbound: 8, StreamsOutbound: 8, Memory: 32 << 20},
	},
	clusterRPCLimit("/hydra/module/hold/1.0.0"),
	{ // a module's bytes (16 MiB by default): few at a time
		id:       "/hydra/module/get/1.0.0",
		total:    rcmgr.BaseLimit{Streams: 64, StreamsInbound: 32, StreamsOutbound: 32, Memory: 64 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 32, StreamsInbound: 16, StreamsOutbound: 16, Memory: 32 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 4, StreamsInbound: 2, StreamsOutbound: 2, Memory: 32 << 20},
	},
	{
		id:       ProtocolPrefix + "/kad/1.0.0",
		total:    rcmgr.BaseLimit{Streams: 512, StreamsInbound: 256, StreamsOutbound: 256, Memory: 32 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 256, StreamsInbound: 128, StreamsOutbound: 128, Memory: 16 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 32, StreamsInbound: 16, StreamsOutbound: 16, Memory: 4 << 20},
	},
}

// outsiderRPCLimit is the budget of a protocol that strangers may use (the
// bootstrap question and the join/approval protocol: docs/security.md):
// small messages, a couple of streams per peer, little memory.
func outsiderRPCLimit(id protocol.ID) protoLimit {
	return protoLimit{
		id:       id,
		total:    rcmgr.BaseLimit{Streams: 256, StreamsInbound: 128, StreamsOutbound: 128, Memory: 8 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 64, StreamsInbound: 32, StreamsOutbound: 32, Memory: 4 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 8, StreamsInbound: 4, StreamsOutbound: 4, Memory: 256 << 10},
	}
}

// clusterRPCLimit is the budget of a small request/response protocol.
func clusterRPCLimit(id protocol.ID) protoLimit {
	return protoLimit{
		id:       id,
		total:    rcmgr.BaseLimit{Streams: 256, StreamsInbound: 128, StreamsOutbound: 128, Memory: 32 << 20},
		increase: rcmgr.BaseLimitIncrease{Streams: 128, StreamsInbound: 64, StreamsOutbound: 64, Memory: 16 << 20},
		perPeer:  rcmgr.BaseLimit{Streams: 16, StreamsInbound: 8, StreamsOutbound: 8, Memory: 8 << 20},
	}
}

// pendingInbound caps inbound connections still in their handshake.
const pendingInbound = 64

// newResourceManager builds libp2p's resource manager from its default
// scaling limits, libp2p's own service limits (identify, ping, ...) and
// Hydra's protocol limits, scaled to this machine's memory and file
// descriptors. The cluster's member protocol is never used for data, so it
// gets a token budget. Non-members' streams whose protocol is not yet
// negotiated are capped besides (outsiderStreams), per g's classification.
func newResourceManager(cluster string, g *gate) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	for _, l := range hydraProtocolLimits {
		limits.AddProtocolLimit(l.id, l.total, l.increase)
		limits.AddProtocolPeerLimit(l.id, l.perPeer, rcmgr.BaseLimitIncrease{})
	}
	// Connections in their handshake belong to no peer yet (the transient
	// scope): a fixed cap, not scaled with memory, bounds what a flood of
	// strangers' connection attempts costs (docs/security.md); established
	// outsiders are capped by the gater (MaxOutsiderPeers).
	limits.TransientBaseLimit.ConnsInbound = pendingInbound
	limits.TransientBaseLimit.Conns = max(limits.TransientBaseLimit.Conns, 2*pendingInbound)
	limits.TransientLimitIncrease.ConnsInbound = 0
	tiny := rcmgr.BaseLimit{Streams: 16, StreamsInbound: 8, StreamsOutbound: 8, Memory: 1 << 20}
	limits.AddProtocolLimit(memberProtocol(cluster), tiny, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(memberProtocol(cluster), rcmgr.BaseLimit{Streams: 2, StreamsInbound: 1, StreamsOutbound: 1, Memory: 1 << 16}, rcmgr.BaseLimitIncrease{})
	scaled := limits.AutoScale()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(scaled))
	if err != nil {
		return nil, err
	}
	// Non-members get half of the transient scope's inbound streams (64 on the smallest
	// machine), members always have the other half.
	transientIn := scaled.ToPartialLimitConfig().Transient.StreamsInbound.Build(rcmgr.DefaultLimits.TransientBaseLimit.StreamsInbound)
	return &outsiderStreams{ResourceManager: rm, gate: g, max: max(1, transientIn/2), perPeer: map[peer.ID]int{}}, nil
}

// maxOutsiderNegotiatingPerPeer caps the inbound streams of one peer that
// is not a member while their protocol is negotiated (outsiderStreams): an
// honest peer negotiates a handful at a time (identify, gossipsub, the DHT,
// a join request), each within a round trip.
const maxOutsiderNegotiatingPerPeer = 16

// outsiderStreams is the host's resource manager: libp2p's, with a cap on
// the inbound streams of peers that are not members (the gate's access)
// while their protocol is negotiated: at most max for all of them together,
// maxOutsiderNegotiatingPerPeer each. Until then a stream belongs to no
// protocol, only to the transient scope, which every peer shares, and
// libp2p waits 10 s for the protocol's name: without the cap a few
// strangers that open streams and never name a protocol (keys are free,
// 200 streams each) kept the transient scope full, and every member's new
// stream (raft, work, apply) was reset for as long as they kept it up. A
// stream over the cap is refused (the opener sees a reset); one leaves the
// count as soon as its protocol is set or it ends.
type outsiderStreams struct {
	network.ResourceManager
	gate *gate
	max  int // half of the transient scope's inbound streams

	mu      sync.Mutex
	total   int
	perPeer map[peer.ID]int
}

// GetConnLimit passes on libp2p's check that the connection manager's
// watermarks fit the system's connection limit (New trims them with it).
func (r *outsiderStreams) GetConnLimit() int {
	if l, ok := r.ResourceManager.(coreconnmgr.GetConnLimiter); ok {
		return l.GetConnLimit()
	}
	return 1 << 30
}

// OpenStream is libp2p's, with a place under the caps taken first for an
// inbound stream of a peer that is not a member.
func (r *outsiderStreams) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	if dir != network.DirInbound || r.gate.access(p) == AccessMember {
		return r.ResourceManager.OpenStream(p, dir)
	}
	r.mu.Lock()
	if r.total >= r.max || r.perPeer[p] >= maxOutsiderNegotiatingPerPeer {
		total, mine := r.total, r.perPeer[p]
		r.mu.Unlock()
		return nil, fmt.Errorf("inbound stream of non-member %s refused (%d of its own, %d of non-members in protocol negotiation): %w",
			p, mine, total, network.ErrResourceLimitExceeded)
	}
	r.total++
	r.perPeer[p]++
	r.mu.Unlock()
	s, err := r.ResourceManager.OpenStream(p, dir)
	if err != nil {
		r.release(p)
		return nil, err
	}
	return &negotiatingStream{StreamManagementScope: s, r: r, p: p}, nil
}

func (r *outsiderStreams) release(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.perPeer[p]--; r.perPeer[p] <= 0 {
		delete(r.perPeer, p)
	}
}

// negotiatingStream is the scope of a non-member's inbound stream: it
// holds a place under outsiderStreams' caps until its protocol is set or it
// ends, whichever comes first.
type negotiatingStream struct {
	network.StreamManagementScope
	r    *outsiderStreams
	p    peer.ID
	once sync.Once
}

func (s *negotiatingStream) free() { s.once.Do(func() { s.r.release(s.p) }) }

// SetProtocol moves the stream to its protocol's scope, and out of the cap.
func (s *negotiatingStream) SetProtocol(proto protocol.ID) error {
	err := s.StreamManagementScope.SetProtocol(proto)
	if err == nil {
		s.free()
	}
	return err
}

// Done ends the stream's scope and frees its place.
func (s *negotiatingStream) Done() {
	s.free()
	s.StreamManagementScope.Done()
}
