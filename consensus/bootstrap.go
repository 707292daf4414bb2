package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/wire"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

// infoResponse answers /hydra/cluster/info/1.0.0: what a fresh node needs
// to decide between joining, waiting and bootstrapping.
type infoResponse struct {
	Cluster   string    `json:"cluster"`
	InCluster bool      `json:"in_cluster"`
	ClusterID string    `json:"cluster_id,omitempty"`
	Leader    string    `json:"leader,omitempty"`
	Voter     VoterPref `json:"voter"`
	// Candidates are the voter-eligible, unclustered peers of our cluster
	// name that this node found alive (itself excluded). A fresh node counts
	// them too when it decides whether it is the lowest candidate: with
	// --join in a star (B and C only know A), B and C do not see each other
	// directly, and without this both would bootstrap a cluster.
	Candidates []string `json:"candidates,omitempty"`
	// Joins: this node was given --join peers or a join token, so it was
	// started to join others, not to be joined. The founder is the lowest
	// candidate that does not join (founderLess): with the README's
	// recipe (the first node alone, the others --join it) the node the
	// user gave its settings to founds the cluster even when a joiner has
	// a lower peer ID. Older builds omit it: they count as not joining.
	Joins bool `json:"joins,omitempty"`
	// Joining are those of Candidates that said they join (Joins), so
	// that a node that knows a candidate only from this answer orders it
	// as the ones that ask it directly do.
	Joining []string `json:"joining,omitempty"`
	// Starting: this node has not been looking for peers for a discovery
	// window yet (its Run just began, or has not), so its Candidates and
	// Peers may be incomplete: the asker waits for it (candidateView).
	Starting bool `json:"starting,omitempty"`
	// Peers are the live peers of our cluster name, clustered or not, that
	// a node outside any cluster knows, with their addresses: the asker
	// dials them and asks them itself (candidates.go). A member lists the
	// other servers of its configuration instead (serverPeers): a joiner
	// that found one member (--join) asks every member, so that it waits
	// on every member's pending list, as one mDNS found on the LAN does.
	Peers []relayPeer `json:"peers,omitempty"`
}

// relayPeer is one entry of infoResponse.Peers.
type relayPeer struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

// Bounds of an info answer: candidates and peers it carries, and the
// addresses per peer.
const (
	maxCandidates = 256
	maxRelayPeers = 32
	maxRelayAddrs = 8
)

// Bounds of the answers a node reads from peers it may not know (info from
// the peers it found, join from the one it asks), well above what the
// bounds above let an answer hold (about 100 KiB of info with long
// addresses): a stranger's answer may otherwise be as long as any stream
// frame, wire.MaxStreamFrame, which decoding multiplies (p2p.CallLimit).
const (
	maxInfoAnswer = 256 << 10
	maxJoinAnswer = 64 << 10
)

// maxBootPeers bounds the discovered peers the bootstrap loop remembers:
// every identified peer is reported (PeerFound), so a stranger that
// rotates keys would otherwise grow the map, and each round's info calls,
// without end. Members and --join peers are remembered beyond it.
const maxBootPeers = 512

// bootPeer is what the bootstrap loop knows about one discovered peer.
type bootPeer struct {
	firstSeen time.Time
	lastOK    time.Time // last successful info answer
	info      infoResponse
	answered  bool
	relayed   bool // learnt from another peer's info answer, not from discovery
}

// bootState is the set of discovered peers, fed by PeerFound and by the
// Peers of info answers.
type bootState struct {
	mu      sync.Mutex
	peers   map[peer.ID]*bootPeer
	cand    map[peer.ID]time.Time // when a peer was first seen as an unclustered candidate
	gone    map[peer.ID]time.Time // relayed peers that never answered: not relayed again before this
	relayed int                   // entries of peers with relayed set
}

func (b *bootState) init() {
	b.peers, b.cand, b.gone = map[peer.ID]*bootPeer{}, map[peer.ID]time.Time{}, map[peer.ID]time.Time{}
}

// PeerFound tells consensus about a peer that discovery found (and
// connected). It is cheap and idempotent: discovery calls it often and
// concurrently. The peer becomes a bootstrap/join candidate; if it is a raft
// member its connection is protected.
//
// The map is bounded (maxBootPeers): when it is full, peers that give
// nothing are forgotten first (pruneBootLocked), and if it is still full a
// new peer that is neither a member nor a --join peer is not remembered;
// discovery reports it again later.
func (r *Raft) PeerFound(p peer.ID) {
	if p == r.id || p == "" {
		return
	}
	r.boot.mu.Lock()
	if bp, ok := r.boot.peers[p]; !ok {
		now := time.Now()
		if len(r.boot.peers) >= maxBootPeers {
			r.pruneBootLocked(now)
		}
		if len(r.boot.peers) >= maxBootPeers && !r.keepBootPeer(p) {
			r.boot.mu.Unlock()
			r.log.Debug("too many discovered peers: not remembering this one", "peer", p, "limit", maxBootPeers)
			return
		}
		r.boot.peers[p] = &bootPeer{firstSeen: now}
	} else if bp.relayed {
		bp.relayed = false // discovery found it too: it stays
		r.boot.relayed--
	}
	r.boot.mu.Unlock()
}

// bootAlive reports whether bp still counts for the bootstrap loop: it
// answered within PeerDrop, or never failed for that long (queryPeers
// leaves the others out of its answer).
func (r *Raft) bootAlive(bp *bootPeer, now time.Time) bool {
	if bp.answered {
		return now.Sub(bp.lastOK) < r.t.PeerDrop
	}
	return now.Sub(bp.firstSeen) < r.t.PeerDrop
}

// keepBootPeer reports whether p is remembered whatever the bounds: a
// member (rejoin asks them) or a --join peer (mayFound waits for them).
func (r *Raft) keepBootPeer(p peer.ID) bool {
	return r.isMember(p) || slices.Contains(r.cfg.JoinPeers, p)
}

// pruneBootLocked forgets the discovered peers that give nothing: silent
// for PeerDrop (bootAlive), no longer connected (discovery reports a peer
// again when it reconnects), and not kept (keepBootPeer). Relayed peers
// expire on their own terms (queryPeers). Called with boot.mu held.
func (r *Raft) pruneBootLocked(now time.Time) {
	for p, bp := range r.boot.peers {
		if bp.relayed || r.bootAlive(bp, now) || r.host.Network().Connectedness(p) == network.Connected || r.keepBootPeer(p) {
			continue
		}
		delete(r.boot.peers, p)
	}
}

// serve registers the cluster protocols. Requests are small, except apply.
func (r *Raft) serve() {
	const small = 64 << 10
	const tiny = 8 << 10
	p2p.Serve(r.host, ProtocolInfo, tiny, r.t.RPC, r.log, r.handleInfo)
	p2p.ServeAllowed(r.host, ProtocolJoin, tiny, r.t.Apply+2*r.t.RPC, r.log, r.joinAllowed, r.handleMembership)
	p2p.ServeAllowed(r.host, ProtocolApply, wire.MaxStreamFrame, r.t.Apply+r.t.RPC, r.log, r.isMember, r.handleApply)
	p2p.ServeAllowed(r.host, ProtocolStats, small, r.t.RPC, r.log, r.isMember, r.handleStats)
}

func (r *Raft) info() infoResponse {
	in := infoResponse{Cluster: r.cfg.Cluster, InCluster: r.inCluster(), Voter: r.cfg.VoterPref, Joins: r.joins()}
	in.ClusterID = r.fsm.State().ClusterID
	if l, ok := r.Leader(); ok {
		in.Leader = l.String()
	}
	if in.InCluster {
		in.Peers = r.serverPeers()
		return in
	}
	now := time.Now()
	started := r.runStart.Load()
	in.Starting = started == 0 || now.Sub(time.Unix(0, started)) < r.t.Discovery
	r.boot.mu.Lock()
	defer r.boot.mu.Unlock()
	for p, bp := range r.boot.peers {
		if !bp.answered || now.Sub(bp.lastOK) >= r.t.PeerDrop || bp.info.Cluster != r.cfg.Cluster {
			continue
		}
		if len(in.Candidates) < maxCandidates && !bp.info.InCluster && bp.info.Voter != VoterNever {
			in.Candidates = append(in.Candidates, p.String())
			if bp.info.Joins {
				in.Joining = append(in.Joining, p.String())
			}
		}
		if len(in.Peers) < maxRelayPeers {
			rp := relayPeer{ID: p.String()}
			for _, a := range r.host.Peerstore().Addrs(p) {
				if len(rp.Addrs) < maxRelayAddrs {
					rp.Addrs = append(rp.Addrs, a.String())
				}
			}
			if len(rp.Addrs) > 0 {
				in.Peers = append(in.Peers, rp)
			}
		}
	}
	return in
}

// serverPeers lists the other servers of this member's raft configuration
// with the addresses its peerstore holds (infoResponse.Peers), bounded like
// any info answer: the addresses the open API's status shows anyway.
func (r *Raft) serverPeers() []relayPeer {
	var out []relayPeer
	for _, s := range r.Servers() {
		if len(out) == maxRelayPeers {
			break
		}
		if s.ID == r.id {
			continue
		}
		rp := relayPeer{ID: s.ID.String()}
		for _, a := range r.host.Peerstore().Addrs(s.ID) {
			if len(rp.Addrs) < maxRelayAddrs {
				rp.Addrs = append(rp.Addrs, a.String())
			}
		}
		if len(rp.Addrs) > 0 {
			out = append(out, rp)
		}
	}
	return out
}

func (r *Raft) handleInfo(context.Context, peer.ID, json.RawMessage) (any, error) {
	return r.info(), nil
}

// Run drives membership until ctx ends or the node shuts down: a fresh node
// joins a cluster found among its peers or bootstraps one (see package doc);
// a member keeps its raft peers protected, registers its NodeMeta when it
// differs from the replicated one, and asks to be re-added if it was removed
// while it was away; the leader also reconciles the allow-list with the
// configuration and asks admitted nodes that are not servers to come back
// (readmit.go). It polls every Poll while it has no cluster or no
// leader, and asks peers about themselves only while it has no cluster or
// has seen no leader for PeerDrop. Once settled (a leader known, nothing
// left to retry) it sleeps until something it acts on may have changed: an
// applied entry, a change of leader, a server added or removed here, an
// admitted node that is not a server connecting to the leader (memberKick;
// readmit.go), at most MemberIdle, and looks again at most every
// MemberPoll (docs/design.md §7 "Idle cost"). Autopilot and leader work run
// from the leadership monitor, not from here. Run returns when ctx is done.
func (r *Raft) Run(ctx context.Context) {
	start := time.Now()
	r.runStart.CompareAndSwap(0, start.UnixNano())
	if r.hadState {
		r.log.Info("raft state found: rejoining as an existing member")
	}
	var noLeaderSince time.Time
	var nextRegister time.Time
	for {
		r.memberKick.rearm() // before looking: an event from now on wakes the wait below
		r.memberRuns.Add(1)
		poll, settled := r.t.Poll, false
		if !r.inCluster() {
			r.bootstrapStep(ctx, start)
		} else {
			r.protectServers()
			if r.askAgain.Swap(false) {
				r.rejoin(ctx) // a lagging replica refused who may lead now (refusedRaft)
			}
			if _, ok := r.Leader(); ok {
				poll, settled = r.t.MemberPoll, true
				noLeaderSince = time.Time{}
				if r.IsLeader() {
					if err := r.reconcileMembers(ctx); err != nil {
						r.log.Debug("reconciling members failed", "err", err)
						settled = false
					}
					r.readmitMembers(ctx)
				}
				if err := r.ensureNodeCred(ctx); err != nil {
					r.log.Debug("registering this node's API credential failed", "err", err)
					settled = false
				}
				if time.Now().After(nextRegister) {
					if err := r.register(ctx); err != nil {
						r.log.Debug("registering node metadata failed", "err", err)
						nextRegister = time.Now().Add(10 * r.t.Poll)
					}
				}
				if !nextRegister.IsZero() && time.Now().Before(nextRegister) {
					settled = false // a retry is due
				}
			} else if noLeaderSince.IsZero() {
				noLeaderSince = time.Now()
			} else if time.Since(noLeaderSince) > r.t.PeerDrop {
				r.rejoin(ctx)
				noLeaderSince = time.Now()
			}
		}
		if !r.sleep(ctx, poll) {
			return
		}
		if settled && !r.sleepKicked(ctx, r.memberKick, r.t.MemberIdle-poll) {
			return
		}
	}
}

// sleepKicked waits until k is kicked or d has passed; false when ctx is
// done or the node shuts down.
func (r *Raft) sleepKicked(ctx context.Context, k *kicker, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.closed:
		return false
	case <-k.c:
		return true
	case <-t.C:
		return true
	}
}

// queryPeers asks every discovered peer for its info, concurrently, and
// returns the peers of our cluster name that answered recently or never
// failed for long (a silent peer drops out after PeerDrop). The peers an
// answer lists are added (learnRelayed) and asked from the next round on;
// silent peers that disconnected are forgotten (pruneBootLocked).
func (r *Raft) queryPeers(ctx context.Context) map[peer.ID]bootPeer {
	now := time.Now()
	r.boot.mu.Lock()
	r.pruneBootLocked(now)
	ids := make([]peer.ID, 0, len(r.boot.peers))
	for p, bp := range r.boot.peers {
		if bp.relayed && !bp.answered && now.Sub(bp.firstSeen) > r.t.PeerDrop {
			// A relayed peer we cannot reach: forget it, and do not take it
			// from another answer again for a while.
			delete(r.boot.peers, p)
			r.boot.relayed--
			if len(r.boot.gone) < maxCandidates {
				r.boot.gone[p] = now.Add(10 * r.t.PeerDrop)
			}
			continue
		}
		ids = append(ids, p)
	}
	r.boot.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, r.t.RPC)
			defer cancel()
			var in infoResponse
			if err := p2p.CallLimit(cctx, r.host, p, ProtocolInfo, maxInfoAnswer, struct{}{}, &in); err != nil {
				return
			}
			if len(in.Candidates) > maxCandidates {
				in.Candidates = in.Candidates[:maxCandidates]
			}
			if len(in.Joining) > maxCandidates {
				in.Joining = in.Joining[:maxCandidates]
			}
			if len(in.Peers) > maxRelayPeers {
				in.Peers = in.Peers[:maxRelayPeers]
			}
			r.boot.mu.Lock()
			if bp := r.boot.peers[p]; bp != nil {
				bp.info, bp.answered, bp.lastOK = in, true, time.Now()
			}
			r.boot.mu.Unlock()
			if in.Cluster == r.cfg.Cluster && !r.inCluster() {
				r.learnRelayed(in.Peers, time.Now())
			}
		}()
	}
	wg.Wait()

	now = time.Now()
	out := map[peer.ID]bootPeer{}
	r.boot.mu.Lock()
	defer r.boot.mu.Unlock()
	for p, bp := range r.boot.peers {
		if !r.bootAlive(bp, now) || (bp.answered && bp.info.Cluster != r.cfg.Cluster) {
			continue
		}
		out[p] = *bp
	}
	return out
}

// learnRelayed adds the peers another node listed (infoResponse.Peers)
// to the ones this node asks: nodes that only know a common peer (--join to
// one hub, a partial mDNS view) meet each other directly, as discovery
// would have made them. Bounded: at most maxCandidates relayed peers at a
// time, maxRelayAddrs addresses each, kept in the peerstore only briefly.
func (r *Raft) learnRelayed(ps []relayPeer, now time.Time) {
	for _, rp := range ps {
		id, err := peer.Decode(rp.ID)
		if err != nil || id == r.id {
			continue
		}
		var addrs []multiaddr.Multiaddr
		for _, s := range rp.Addrs {
			if len(addrs) == maxRelayAddrs {
				break
			}
			if a, err := multiaddr.NewMultiaddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		r.boot.mu.Lock()
		_, known := r.boot.peers[id]
		until, gone := r.boot.gone[id]
		if gone && now.After(until) {
			delete(r.boot.gone, id)
			gone = false
		}
		add := !known && !gone && r.boot.relayed < maxCandidates
		if add {
			r.boot.peers[id] = &bootPeer{firstSeen: now, relayed: true}
			r.boot.relayed++
		}
		r.boot.mu.Unlock()
		if add {
			r.host.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
		}
	}
}

// bootstrapStep is one round of the fresh node's decision.
func (r *Raft) bootstrapStep(ctx context.Context, start time.Time) {
	peers := r.queryPeers(ctx)
	// 1. Join any cluster a peer is in (ours by name). A peer that reports a
	// leader is asked first; it forwards to the leader anyway.
	var members []peer.ID
	for p, bp := range peers {
		if bp.answered && bp.info.InCluster {
			if bp.info.Leader != "" {
				members = append([]peer.ID{p}, members...)
			} else {
				members = append(members, p)
			}
		}
	}
	pending := false
	for _, m := range members {
		resp, err := r.requestMembership(ctx, m, false)
		if err != nil && r.joinTok != nil && isTokenRefusal(err) && !r.tokenRefusedLogged.Swap(true) {
			// Said once, loud; the node keeps asking: the refusal is not
			// proven to be the cluster's (isTokenRefusal), and stopping on
			// it would let any peer that claims the cluster's ID stop a
			// joiner for good.
			r.log.Error("the cluster refused this node's join token (revoked, expired or used up?): make a new one with hydra token create on a member and restart this node with it; it keeps asking meanwhile", "via", m, "token", r.joinTok.ID, "err", err)
		}
		if err != nil {
			r.log.Debug("join request failed", "via", m, "err", err)
			continue
		}
		if resp.Pending { // ask every member, so every UI shows this node
			pending = true
			continue
		}
		r.log.Info("asked to join the cluster", "via", m)
		return
	}
	if pending && !r.waiting.Swap(true) {
		r.log.Warn("waiting for approval: approve this node in the web UI or with hydra approve", "fingerprint", Fingerprint(r.id))
	}
	if len(members) > 0 {
		return
	}
	// 2. Nobody is in a cluster: the first eligible candidate in
	// founderLess order (those not given --join first, then by peer ID)
	// bootstraps, once no new candidate has appeared for a discovery window.
	now := time.Now()
	if !r.mayFound(peers, now) {
		return
	}
	view, quiet := r.candidateView(peers, now)
	if now.Sub(start) < r.t.Discovery || now.Sub(quiet) < r.t.Discovery {
		return
	}
	if !shouldBootstrap(r.id, r.cfg.VoterPref, r.joins(), view) {
		return
	}
	r.log.Info("bootstrapping a new cluster", "candidates", len(view)+1)
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(r.id.String()), Address: raft.ServerAddress(r.id.String()),
	}}}
	if err := r.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		r.log.Warn("bootstrap failed", "err", err)
	}
}

// register makes sure the replicated NodeMeta of this node is cfg.Self.
func (r *Raft) register(ctx context.Context) error {
	st := r.fsm.State()
	if !st.Initialized() {
		return nil
	}
	if cur, ok := st.Nodes[r.id.String()]; ok && cur == r.cfg.Self {
		return nil
	}
	cmd, err := NewCommand(OpNodeRegister, r.cfg.Self)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*r.t.Apply)
	defer cancel()
	_, err = r.Apply(cctx, cmd)
	return err
}

// protectServers asks the connection manager to keep our raft peers.
func (r *Raft) protectServers() {
	if r.cfg.Protect == nil {
		return
	}
	for _, s := range r.Servers() {
		if s.ID != r.id {
			r.cfg.Protect(s.ID)
		}
	}
}
