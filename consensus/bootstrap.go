package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/wire"
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
}

// maxCandidates bounds the candidates one info answer carries.
const maxCandidates = 256

// membershipRequest is the /hydra/cluster/join/1.0.0 request: add ID as a
// non-voter (or, with Leave, remove it). A member that is not the leader
// forwards it once to its leader, adding the joiner's addresses it knows so
// the leader can dial it, whether the joiner asked from the LAN, and itself
// as Via (the member a join token's proof names).
type membershipRequest struct {
	Cluster   string   `json:"cluster"`
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	Addrs     []string `json:"addrs,omitempty"`
	Leave     bool     `json:"leave,omitempty"`
	Forwarded bool     `json:"forwarded,omitempty"`
	// Voter is the joiner's voter preference, so the leader can give it a
	// vote at once (growVoters) before its NodeMeta is replicated. Older
	// nodes omit it: auto.
	Voter VoterPref `json:"voter,omitempty"`
	// TokenID and Proof: a join token's ID and its proof over (cluster,
	// joiner, Via) (ParsedJoinToken.Proof).
	TokenID string `json:"token_id,omitempty"`
	Proof   string `json:"proof,omitempty"`
	// Via and LAN are set by the member that forwards a joiner's request.
	Via string `json:"via,omitempty"`
	LAN bool   `json:"lan,omitempty"`
}

type membershipResponse struct {
	Changed bool `json:"changed"`
	// Pending: the joiner waits for an admin's approval (Fingerprint is
	// what the admin sees).
	Pending     bool   `json:"pending,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Leader and Servers: who will replicate to the admitted joiner.
	Leader  string   `json:"leader,omitempty"`
	Servers []string `json:"servers,omitempty"`
}

// bootPeer is what the bootstrap loop knows about one discovered peer.
type bootPeer struct {
	firstSeen time.Time
	lastOK    time.Time // last successful info answer
	info      infoResponse
	answered  bool
}

// bootState is the set of discovered peers, fed by PeerFound.
type bootState struct {
	mu    sync.Mutex
	peers map[peer.ID]*bootPeer
	cand  map[peer.ID]time.Time // when a peer was first seen as an unclustered candidate
}

func (b *bootState) init() { b.peers, b.cand = map[peer.ID]*bootPeer{}, map[peer.ID]time.Time{} }

// PeerFound tells consensus about a peer that discovery found (and
// connected). It is cheap and idempotent: discovery calls it often and
// concurrently. The peer becomes a bootstrap/join candidate; if it is a raft
// member its connection is protected.
func (r *Raft) PeerFound(p peer.ID) {
	if p == r.id || p == "" {
		return
	}
	r.boot.mu.Lock()
	if _, ok := r.boot.peers[p]; !ok {
		r.boot.peers[p] = &bootPeer{firstSeen: time.Now()}
	}
	r.boot.mu.Unlock()
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
	in := infoResponse{Cluster: r.cfg.Cluster, InCluster: r.inCluster(), Voter: r.cfg.VoterPref}
	in.ClusterID = r.fsm.State().ClusterID
	if l, ok := r.Leader(); ok {
		in.Leader = l.String()
	}
	if !in.InCluster {
		now := time.Now()
		r.boot.mu.Lock()
		for p, bp := range r.boot.peers {
			if len(in.Candidates) == maxCandidates {
				break
			}
			if bp.answered && now.Sub(bp.lastOK) < r.t.PeerDrop && bp.info.Cluster == r.cfg.Cluster &&
				!bp.info.InCluster && bp.info.Voter != VoterNever {
				in.Candidates = append(in.Candidates, p.String())
			}
		}
		r.boot.mu.Unlock()
	}
	return in
}

func (r *Raft) handleInfo(context.Context, peer.ID, json.RawMessage) (any, error) {
	return r.info(), nil
}

// Run drives membership until ctx ends or the node shuts down: a fresh node
// joins a cluster found among its peers or bootstraps one (see package doc);
// a member keeps its raft peers protected, registers its NodeMeta when it
// differs from the replicated one, and asks to be re-added if it was removed
// while it was away. It polls every Poll while it has no cluster or no
// leader, every MemberPoll once settled, and asks peers about themselves
// only while it has no cluster or has seen no leader for PeerDrop.
// Autopilot and leader work run from the leadership monitor, not from
// here. Run returns when ctx is done.
func (r *Raft) Run(ctx context.Context) {
	start := time.Now()
	if r.hadState {
		r.log.Info("raft state found: rejoining as an existing member")
	}
	var noLeaderSince time.Time
	var nextRegister time.Time
	for {
		poll := r.t.Poll
		if !r.inCluster() {
			r.bootstrapStep(ctx, start)
		} else {
			r.protectServers()
			if _, ok := r.Leader(); ok {
				poll = r.t.MemberPoll // settled: no need to look often
				noLeaderSince = time.Time{}
				if r.IsLeader() {
					r.reconcileMembers(ctx)
				}
				r.ensureNodeCred(ctx)
				if time.Now().After(nextRegister) {
					if err := r.register(ctx); err != nil {
						r.log.Debug("registering node metadata failed", "err", err)
						nextRegister = time.Now().Add(10 * r.t.Poll)
					}
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
	}
}

// queryPeers asks every discovered peer for its info, concurrently, and
// returns the peers of our cluster name that answered recently or never
// failed for long (a silent peer drops out after PeerDrop).
func (r *Raft) queryPeers(ctx context.Context) map[peer.ID]bootPeer {
	r.boot.mu.Lock()
	ids := make([]peer.ID, 0, len(r.boot.peers))
	for p := range r.boot.peers {
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
			if err := p2p.Call(cctx, r.host, p, ProtocolInfo, struct{}{}, &in); err != nil {
				return
			}
			if len(in.Candidates) > maxCandidates {
				in.Candidates = in.Candidates[:maxCandidates]
			}
			r.boot.mu.Lock()
			bp := r.boot.peers[p]
			bp.info, bp.answered, bp.lastOK = in, true, time.Now()
			r.boot.mu.Unlock()
		}()
	}
	wg.Wait()

	now := time.Now()
	out := map[peer.ID]bootPeer{}
	r.boot.mu.Lock()
	defer r.boot.mu.Unlock()
	for p, bp := range r.boot.peers {
		alive := (bp.answered && now.Sub(bp.lastOK) < r.t.PeerDrop) ||
			(!bp.answered && now.Sub(bp.firstSeen) < r.t.PeerDrop)
		if !alive || (bp.answered && bp.info.Cluster != r.cfg.Cluster) {
			continue
		}
		out[p] = *bp
	}
	return out
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
	if len(members) > 0 || time.Since(start) < r.t.Discovery {
		return
	}
	// 2. Nobody is in a cluster: the lowest eligible candidate bootstraps.
	if !r.shouldBootstrap(peers) {
		return
	}
	r.log.Info("bootstrapping a new cluster", "candidates", len(peers)+1)
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(r.id.String()), Address: raft.ServerAddress(r.id.String()),
	}}}
	if err := r.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		r.log.Warn("bootstrap failed", "err", err)
	}
}

// shouldBootstrap applies the deterministic rule: among this node and the
// live, unclustered peers of our cluster name, only voter-eligible ones
// count (VoterNever nodes only when nobody is eligible), and the lowest peer
// ID wins. A peer that never answered still counts until it drops out, so a
// slow peer is waited for rather than raced.
func shouldBootstrap(self peer.ID, selfPref VoterPref, peers map[peer.ID]bootPeer) bool {
	eligible := func(pref VoterPref) bool { return pref != VoterNever }
	anyEligible := eligible(selfPref)
	for _, bp := range peers {
		if !bp.answered || eligible(bp.info.Voter) {
			anyEligible = true
		}
	}
	if anyEligible && !eligible(selfPref) {
		return false
	}
	for p, bp := range peers {
		if bp.answered && bp.info.InCluster {
			return false
		}
		counts := !bp.answered || eligible(bp.info.Voter) || !anyEligible
		if counts && p < self {
			return false
		}
		// Candidates our peers see that we may not: a lower one wins.
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil && id != self && id < self {
				return false
			}
		}
	}
	return true
}

func (r *Raft) shouldBootstrap(peers map[peer.ID]bootPeer) bool {
	return shouldBootstrap(r.id, r.cfg.VoterPref, r.dropStuck(peers, time.Now()))
}

// stuckAfter is how long a lower candidate may stay unclustered before it
// stops counting: an honest lowest candidate founds the cluster one
// discovery window after it starts, so one that never does (a stranger
// announcing a fake low peer ID, or a low ID in a candidate list) must not
// keep a fresh LAN from ever forming a cluster.
func (r *Raft) stuckAfter() time.Duration { return 3*r.t.Discovery + r.t.PeerDrop }

// dropStuck returns peers without the candidates, direct or reported, that
// have been candidates for longer than stuckAfter.
func (r *Raft) dropStuck(peers map[peer.ID]bootPeer, now time.Time) map[peer.ID]bootPeer {
	r.boot.mu.Lock()
	defer r.boot.mu.Unlock()
	stuck := func(p peer.ID) bool {
		first, ok := r.boot.cand[p]
		if !ok {
			if len(r.boot.cand) >= 4*maxCandidates {
				return true // too many distinct candidates: only known ones count
			}
			r.boot.cand[p] = now
			return false
		}
		return now.Sub(first) > r.stuckAfter()
	}
	out := make(map[peer.ID]bootPeer, len(peers))
	for p, bp := range peers {
		if bp.answered && !bp.info.InCluster && stuck(p) {
			continue
		}
		var keep []string
		for _, c := range bp.info.Candidates {
			if id, err := peer.Decode(c); err == nil && !stuck(id) {
				keep = append(keep, c)
			}
		}
		bp.info.Candidates = keep
		out[p] = bp
	}
	return out
}

// requestMembership asks via to add (or with leave, remove) this node. A
// join token's proof is bound to via and to this node. The answer says
// whether the node waits for approval; once admitted, the leader and
// servers it names may replicate to this node.
func (r *Raft) requestMembership(ctx context.Context, via peer.ID, leave bool) (membershipResponse, error) {
	req := membershipRequest{Cluster: r.cfg.Cluster, ID: r.id.String(), Name: r.cfg.Self.Name, Leave: leave, Voter: r.cfg.VoterPref}
	for _, a := range r.host.Addrs() {
		if len(req.Addrs) < maxJoinAddrs {
			req.Addrs = append(req.Addrs, a.String())
		}
	}
	if r.joinTok != nil && !leave {
		r.boot.mu.Lock()
		cid := ""
		if bp := r.boot.peers[via]; bp != nil {
			cid = bp.info.ClusterID
		}
		r.boot.mu.Unlock()
		if ClusterFingerprint(cid) != r.joinTok.ClusterFP {
			return membershipResponse{}, fmt.Errorf("%s is in cluster %s, not the one the join token is for (%s)", via, ClusterFingerprint(cid), r.joinTok.ClusterFP)
		}
		req.TokenID = r.joinTok.ID
		req.Proof = r.joinTok.Proof(cid, r.id.String(), via.String())
	}
	cctx, cancel := context.WithTimeout(ctx, r.t.Apply+2*r.t.RPC)
	defer cancel()
	// While the request is in flight, the member asked and the leader it
	// names may replicate to us: the leader adds us before it answers.
	var tentative []peer.ID
	if !leave && !r.inCluster() {
		tentative = append(tentative, via)
		r.boot.mu.Lock()
		if bp := r.boot.peers[via]; bp != nil {
			if l, err := peer.Decode(bp.info.Leader); err == nil {
				tentative = append(tentative, l)
			}
		}
		r.boot.mu.Unlock()
		for _, p := range tentative {
			r.expected.LoadOrStore(p, false)
		}
	}
	var resp membershipResponse
	err := p2p.Call(cctx, r.host, via, ProtocolJoin, req, &resp)
	for _, p := range tentative {
		if v, ok := r.expected.Load(p); ok && v == false && (err != nil || resp.Pending) {
			r.expected.Delete(p)
		}
	}
	if err != nil {
		return resp, err
	}
	if !resp.Pending && !leave {
		r.expected.Store(via, true)
		for _, s := range append(resp.Servers, resp.Leader) {
			if p, err := peer.Decode(s); err == nil {
				r.expected.Store(p, true)
			}
		}
	}
	return resp, nil
}

// joinAllowed admits a join-protocol stream: any peer whose key is not
// revoked, at most once per joinInterval (members forwarding for many
// joiners are not limited).
func (r *Raft) joinAllowed(p peer.ID) bool {
	switch r.Access(p) {
	case p2p.AccessRefused:
		return false
	case p2p.AccessMember:
		return true
	}
	return r.pending.allow(p, time.Now())
}

// handleMembership serves /hydra/cluster/join/1.0.0. The leader admits a
// node that is a member already, shows a valid join token, or (in --admit
// lan mode) asks from the LAN, and then adds it as a non-voter (idempotent;
// autopilot promotes members, never workers); any other joiner is put on
// the pending list until an admin approves it. A follower forwards once
// to its leader, and keeps the joiner on its own pending list too so that
// every member's UI shows it. Leave removes the node.
func (r *Raft) handleMembership(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
	var req membershipRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("decode membership request: %w", err)
	}
	if req.Cluster != r.cfg.Cluster {
		return nil, fmt.Errorf("cluster name %q does not match", req.Cluster)
	}
	id, err := peer.Decode(req.ID)
	if err != nil {
		return nil, fmt.Errorf("bad peer ID: %w", err)
	}
	if len(req.Addrs) > maxJoinAddrs || len(req.Name) > maxNameLen || len(req.Proof) > 256 || len(req.TokenID) > maxIDLen {
		return nil, errors.New("membership request too large")
	}
	if r.Access(id) == p2p.AccessRefused {
		return nil, fmt.Errorf("%s is refused by this cluster", id)
	}
	if id != from && !r.isMember(from) {
		return nil, fmt.Errorf("%s may not ask on behalf of %s", from, id)
	}
	if !r.fsm.State().Initialized() {
		return nil, errors.New("this node is not in a cluster yet")
	}
	if id == from {
		req.Via, req.LAN = r.id.String(), r.isLAN(from)
		req.Addrs = req.Addrs[:0]
		for _, a := range r.host.Peerstore().Addrs(id) {
			if len(req.Addrs) < maxJoinAddrs {
				req.Addrs = append(req.Addrs, a.String())
			}
		}
	}
	if len(req.Addrs) == 0 && id != from {
		for _, a := range r.host.Peerstore().Addrs(id) {
			req.Addrs = append(req.Addrs, a.String())
		}
	}
	if !req.Leave && r.roleOf(id) == "" {
		r.pending.add(PendingNode{ID: id.String(), Name: req.Name, Addrs: req.Addrs, Fingerprint: Fingerprint(id)}, time.Now())
	}
	if r.raft.State() != raft.Leader {
		leader, ok := r.Leader()
		if !ok || leader == r.id {
			return nil, errors.New("no leader known yet")
		}
		if req.Forwarded {
			return nil, fmt.Errorf("not the leader (leader is %s)", leader)
		}
		req.Forwarded = true
		var resp membershipResponse
		if err := p2p.Call(ctx, r.host, leader, ProtocolJoin, req, &resp); err != nil {
			return nil, fmt.Errorf("forward to leader %s: %w", leader, err)
		}
		return resp, nil
	}
	if req.Leave {
		if id != from && !r.hasServer(from) {
			return nil, fmt.Errorf("%s may not remove %s", from, id)
		}
		resp, err := r.removeServer(ctx, id)
		if err == nil && r.roleOf(id) != "" {
			cmd, cerr := NewCommand(OpMemberRemove, MemberRemove{ID: id.String()})
			if cerr == nil {
				_, err = r.applyLocal(ctx, mustEncode(cmd))
			}
		}
		return resp, err
	}
	if resp, done, err := r.admit(ctx, id, req); done || err != nil {
		return resp, err
	}
	for _, s := range req.Addrs {
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			r.host.Peerstore().AddAddr(id, a, peerstore.AddressTTL)
		}
	}
	pref := req.Voter
	if r.roleOf(id) == RoleWorker {
		pref = VoterNever // a worker never holds a vote
	}
	r.grow.notePref(id, pref)
	resp := membershipResponse{Leader: r.id.String()}
	for _, s := range r.Servers() {
		resp.Servers = append(resp.Servers, s.ID.String())
	}
	if r.hasServer(id) {
		r.growVoters(ctx)
		return resp, nil
	}
	if r.cfg.Protect != nil {
		r.cfg.Protect(id)
	}
	addr := raft.ServerAddress(id.String())
	if err := r.raft.AddNonvoter(raft.ServerID(id.String()), addr, 0, r.t.Apply).Error(); err != nil {
		return nil, fmt.Errorf("add %s: %w", id, err)
	}
	r.log.Info("added non-voter", "peer", id, "role", r.roleOf(id))
	r.growVoters(ctx)
	resp.Changed = true
	return resp, nil
}

// admit decides, on the leader, whether id may join; done means the answer
// is resp (pending approval).
func (r *Raft) admit(ctx context.Context, id peer.ID, req membershipRequest) (membershipResponse, bool, error) {
	st := r.fsm.State()
	if st.memberRole(id.String(), r.hasServer(id)) != "" {
		return membershipResponse{}, false, nil
	}
	add := MemberAdd{ID: id.String(), Role: RoleMember, Name: req.Name, At: time.Now().UTC()}
	var why string
	switch {
	case req.TokenID != "":
		t, err := st.verifyJoinProof(req.TokenID, req.Proof, id.String(), req.Via, add.At)
		if err != nil {
			r.log.Warn("join token refused", "peer", id, "err", err)
			return membershipResponse{}, true, fmt.Errorf("join token refused: %w", err)
		}
		add.Role, add.TokenID, why = t.Role, req.TokenID, "join token "+req.TokenID
	case st.AdmitMode() == AdmitLAN && req.LAN:
		why = "--admit lan"
	default:
		return membershipResponse{Pending: true, Fingerprint: Fingerprint(id)}, true, nil
	}
	cmd, err := NewCommand(OpMemberAdd, add)
	if err == nil {
		_, err = r.applyLocal(ctx, mustEncode(cmd))
	}
	if err != nil {
		return membershipResponse{}, true, fmt.Errorf("admit %s: %w", id, err)
	}
	r.pending.remove(id)
	r.log.Info("node admitted", "peer", id, "role", add.Role, "by", why)
	return membershipResponse{}, false, nil
}

// removeServer removes id from the configuration and its NodeMeta from the
// state (leader only). Removing a server that is not there is a no-op.
func (r *Raft) removeServer(ctx context.Context, id peer.ID) (membershipResponse, error) {
	changed := false
	if r.hasServer(id) {
		if err := r.raft.RemoveServer(raft.ServerID(id.String()), 0, r.t.Apply).Error(); err != nil {
			return membershipResponse{}, fmt.Errorf("remove %s: %w", id, err)
		}
		changed = true
		r.log.Info("removed server", "peer", id)
	}
	if _, ok := r.fsm.State().Nodes[id.String()]; ok {
		cmd, err := NewCommand(OpNodeRemove, NodeRemove{ID: id.String()})
		if err == nil {
			_, err = r.applyLocal(ctx, mustEncode(cmd))
		}
		if err != nil {
			return membershipResponse{}, fmt.Errorf("forget node %s: %w", id, err)
		}
	}
	return membershipResponse{Changed: changed}, nil
}

// rejoin runs on a member that has seen no leader for a while: if a peer of
// the same cluster ID knows a leader, ask to be added again (we may have
// been removed while away; for a member the request is a no-op).
func (r *Raft) rejoin(ctx context.Context) {
	mine := r.fsm.State().ClusterID
	if mine == "" {
		return
	}
	for p, bp := range r.queryPeers(ctx) {
		if bp.answered && bp.info.ClusterID == mine && bp.info.Leader != "" && bp.info.Leader != r.id.String() {
			if _, err := r.requestMembership(ctx, p, false); err == nil {
				r.log.Info("asked to be re-added to the cluster", "via", p)
				return
			}
		}
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
