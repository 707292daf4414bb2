package consensus

// The join/approval protocol (/hydra/cluster/join/1.0.0): a fresh node asks
// a member to be added, the member forwards to its leader, and the leader
// admits it (member already, join token, --admit lan) or lists it as
// pending until an admin approves it (docs/security.md).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

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
	// Nonce is a token joiner's fresh random challenge (hex, 32 bytes):
	// the answer's ClusterProof covers it, so no answer can be replayed.
	Nonce string `json:"nonce,omitempty"`
	// Via and LAN are set by the member that forwards a joiner's request.
	Via string `json:"via,omitempty"`
	LAN bool   `json:"lan,omitempty"`
	// Auth is the admin credential of the person behind a Leave for
	// another node: a node may ask to remove only itself otherwise. The
	// leader checks it; it is never written to the log.
	Auth string `json:"auth,omitempty"`
}

type membershipResponse struct {
	Changed bool `json:"changed"`
	// Pending: the joiner waits for an admin's approval (Fingerprint is
	// what the admin sees).
	Pending     bool   `json:"pending,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Leader and Servers: who may replicate to the admitted joiner, the
	// leader and the voters (a later leader is one of them), never a
	// non-voter nor a voter whose key is revoked (removed, not yet out of
	// the configuration): a worker never sends raft RPCs, and the joiner trusts
	// those named until its replica holds its own allow-list entry.
	Leader  string   `json:"leader,omitempty"`
	Servers []string `json:"servers,omitempty"`
	// ClusterProof answers a token joiner's Nonce: the leader's MAC under
	// the token's cluster key (answerProof), so that the joiner knows the
	// answer comes from the cluster the token is for, through the member it
	// asked, and not from a peer that only claims its cluster ID.
	ClusterProof string `json:"cluster_proof,omitempty"`
	// Index is the last entry the leader's replica had applied when it
	// answered (its own admission of the joiner included): the joiner
	// trusts Leader and Servers until its replica has applied that far.
	// Its replica replays the cluster's history, and an index where the
	// leader had left (hydra leave, approved again later) or where the
	// joiner's own earlier membership appears judged the leader by a past
	// allow-list: the joiner refused it for good (found by the chaos
	// harness). 0 from an older leader: trusted until the joiner's own
	// allow-list entry is in its replica.
	Index uint64 `json:"index,omitempty"`
}

// maxNonceLen bounds a join request's Nonce (hex of 32 bytes).
const maxNonceLen = 64

// tokenRefused starts the leader's refusal of a join token (revoked,
// expired, used up, or a proof that does not verify), which the joiner
// recognises in the remote error (isTokenRefusal).
const tokenRefused = "join token refused"

// isTokenRefusal reports whether err is a join request's refusal of this
// node's token by the peer asked or the leader it forwarded to. Nothing
// proves it comes from the cluster: a refusal carries no proof (a revoked
// token's cluster key is gone), and anyone can claim the cluster's ID.
func isTokenRefusal(err error) bool {
	re, ok := errors.AsType[*p2p.RemoteError](err)
	return ok && strings.Contains(re.Msg, tokenRefused)
}

// requestMembership asks via to add (or with leave, remove) this node. A
// join token's proof is bound to via and to this node. The answer says
// whether the node waits for approval; once admitted, the leader and
// voters it names may replicate to this node until its replica holds its
// own allow-list entry (expects).
func (r *Raft) requestMembership(ctx context.Context, via peer.ID, leave bool) (membershipResponse, error) {
	req := membershipRequest{Cluster: r.cfg.Cluster, ID: r.id.String(), Name: r.cfg.Self.Name, Leave: leave, Voter: r.cfg.VoterPref}
	for _, a := range r.host.Addrs() {
		if len(req.Addrs) < maxJoinAddrs {
			req.Addrs = append(req.Addrs, a.String())
		}
	}
	cid := "" // the cluster ID via claims, which a token's proofs are bound to
	if r.joinTok != nil && !leave {
		r.boot.mu.Lock()
		if bp := r.boot.peers[via]; bp != nil {
			cid = bp.info.ClusterID
		}
		r.boot.mu.Unlock()
		if ClusterFingerprint(cid) != r.joinTok.ClusterFP {
			return membershipResponse{}, fmt.Errorf("%s is in cluster %s, not the one the join token is for (%s)", via, ClusterFingerprint(cid), r.joinTok.ClusterFP)
		}
		req.TokenID = r.joinTok.ID
		req.Proof = r.joinTok.Proof(cid, r.id.String(), via.String())
		req.Nonce = randomHex(32)
	}
	cctx, cancel := context.WithTimeout(ctx, r.t.Apply+2*r.t.RPC)
	defer cancel()
	// A fresh node trusts the cluster it asks to join: while the request is
	// in flight, the member asked and the leader it names may replicate to
	// us (the leader adds us before it answers), and once admitted, so may
	// the leader and voters the answer names. A node already in a cluster
	// (rejoin) trusts an answer only from a peer it knows as a member:
	// anyone can claim its cluster ID and answer a join call, and what the
	// answer names would pass every membership check here (Access).
	//
	// A fresh node with a join token trusts nobody before the answer: the
	// answer must prove the token's cluster key (ClusterProof), and a peer
	// trusted while the request is in flight could install a state of its
	// own before it answers. The leader's first raft RPCs to it are
	// refused; raft retries them once the answer is checked.
	seen := r.ownSeen.Load() // our own entry in the replica from now on makes an answer with no Index stale
	fresh := !r.inCluster()
	trusted := fresh || r.roleOf(via) == RoleMember
	tokenJoin := r.joinTok != nil && !leave && fresh
	var tentative []peer.ID
	if !leave && fresh && !tokenJoin {
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
	err := p2p.CallLimit(cctx, r.host, via, ProtocolJoin, maxJoinAnswer, req, &resp)
	if h := r.answerHook.Load(); h != nil && err == nil {
		err = (*h)(via, resp) // tests only: lose this answer
	}
	replicating := err != nil && r.inCluster() // the leader added us and its entries came; the answer did not
	for _, p := range tentative {
		if v, ok := r.expected.Load(p); ok && v == false && (err != nil || resp.Pending) {
			if replicating {
				// Our replica is theirs now, part of the way: a lost answer must
				// not leave it judging the leader by the past allow-list it
				// stands at (a revocation of a leader approved again since: it
				// would refuse the rest for good). They stand as an answer
				// without an index does, until our own entry is in the replica.
				r.expected.CompareAndSwap(p, false, true)
				continue
			}
			r.expected.Delete(p)
		}
	}
	if err != nil {
		return resp, err
	}
	if !resp.Pending && !leave && !trusted {
		r.log.Warn("ignored a join answer from a peer that is not a member", "peer", via)
		return resp, fmt.Errorf("%s answered, but it is not a member this node knows", via)
	}
	if !resp.Pending && tokenJoin {
		if err := r.checkAnswer(req, resp, via, cid); err != nil {
			r.log.Warn("ignored a join answer that does not prove the join token's cluster", "peer", via, "err", err)
			return membershipResponse{}, err
		}
	}
	if !resp.Pending && !leave {
		r.expectedUntil.Store(resp.Index) // before the peers: forgetExpected reads it
		r.expected.Store(via, true)
		for _, s := range append(resp.Servers, resp.Leader) {
			if p, err := peer.Decode(s); err == nil {
				r.expected.Store(p, true)
			}
		}
		if resp.Index == 0 && r.ownSeen.Load() != seen {
			// The leader adds us before it answers, so our entry may have been
			// applied here before the answer came, and even removed again since:
			// from the entry on, the roles decide, not the answer.
			r.expected.Clear()
		}
		r.forgetExpected() // the entry may have been applied before the answer came
	}
	return resp, nil
}

// checkAnswer checks a token joiner's admission answer from via: its
// ClusterProof must be the token's cluster key's MAC over this request's
// nonce, this node, via, the cluster ID cid (the one the request's proof
// was bound to) and what the answer names. An
// answer without a proof passes only for a token an older build made
// (ParsedJoinToken.Legacy): its record has no cluster key.
func (r *Raft) checkAnswer(req membershipRequest, resp membershipResponse, via peer.ID, cid string) error {
	if resp.ClusterProof == "" && r.joinTok.Legacy {
		r.log.Warn("join answer carries no cluster proof: the join token was made by an older hydra, so this node cannot tell the cluster from a peer that claims its ID; make a new token (hydra token create) to have it checked", "peer", via)
		return nil
	}
	if resp.ClusterProof == "" {
		return fmt.Errorf("%s answered the join without proving the join token's cluster", via)
	}
	if !r.joinTok.VerifyAnswer(resp.ClusterProof, req.Nonce, r.id.String(), via.String(), cid, resp.Leader, resp.Servers) {
		return fmt.Errorf("%s answered the join with a cluster proof that does not verify", via)
	}
	return nil
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
// every member's UI shows it. Leave removes the node: its own request,
// which the leader serves itself, or one with an admin credential (Auth).
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
	if len(req.Addrs) > maxJoinAddrs || len(req.Name) > maxNameLen || len(req.Proof) > 256 || len(req.TokenID) > maxIDLen || len(req.Auth) > 256 || len(req.Nonce) > maxNonceLen {
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
	switch {
	case id == from:
		req.Via, req.LAN = r.id.String(), r.isLAN(from)
		req.Addrs = req.Addrs[:0]
		for _, a := range r.host.Peerstore().Addrs(id) {
			if len(req.Addrs) < maxJoinAddrs {
				req.Addrs = append(req.Addrs, a.String())
			}
		}
	case r.roleOf(from) != RoleMember:
		// Only a member's word is taken for a joiner it forwards (a member
		// holds an admin credential anyway). From a worker, or a leader
		// this node only expects, what decides the admission is what this
		// node can tell itself: the joiner asked the forwarder (its token
		// proof must name it), nobody vouches for its LAN address (a
		// worker's lan: true would admit any key as a member, which then
		// registers an admin credential), and its voter preference counts
		// only to keep it from a vote (never, the joiner's own wish or a
		// lie that only costs the lie), else it is the default until it
		// registers its own.
		req.Via, req.LAN = from.String(), false
		if req.Voter != VoterNever {
			req.Voter = VoterAuto
		}
	}
	if len(req.Addrs) == 0 && id != from {
		for _, a := range r.host.Peerstore().Addrs(id) {
			if len(req.Addrs) < maxJoinAddrs { // more, forwarded, and the leader refuses the request
				req.Addrs = append(req.Addrs, a.String())
			}
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
		if req.Leave && id == from {
			// Forwarded, it would reach the leader as a request of this
			// node to remove another: the leaver asks the leader itself
			// (Leave retries with its view of the leader).
			return nil, fmt.Errorf("not the leader (leader is %s): ask it to leave", leader)
		}
		req.Forwarded = true
		var resp membershipResponse
		if err := p2p.Call(ctx, r.host, leader, ProtocolJoin, req, &resp); err != nil {
			return nil, fmt.Errorf("forward to leader %s: %w", leader, err)
		}
		return resp, nil
	}
	if req.Leave {
		// A node may ask to remove itself; removing another needs an admin
		// credential, as Evict does (docs/security.md).
		if id != from && !r.fsm.State().IsAdmin(req.Auth) {
			r.log.Warn("refused a request to remove another node", "from", from, "peer", id)
			return nil, fmt.Errorf("%w: %s may not remove %s without an admin credential", ErrForbidden, from, id)
		}
		// The server goes first, then the entry, with no join between
		// them: a server without an entry counts as a member.
		r.lockMembers(id)
		defer r.memberMu.Unlock()
		if err := r.leaveWaits(id); err != nil {
			return nil, err
		}
		resp, err := r.removeServer(ctx, id)
		r.gap("leave", id)
		if err == nil && r.roleOf(id) != "" {
			cmd, cerr := NewCommand(OpMemberRemove, MemberRemove{ID: id.String()})
			if cerr == nil {
				_, err = r.applyLocked(ctx, mustEncode(cmd))
			}
		}
		return resp, err
	}
	resp, grow, err := r.admitAndAdd(ctx, id, req)
	if grow {
		r.growVoters(ctx)
	}
	return resp, err
}

// admitAndAdd admits id if it may join (admit) and adds it as a non-voter,
// under memberMu: a leave or a deny proposed meanwhile is applied before
// the decision or after the addition, never between them. grow: the
// leader's voters may grow now.
func (r *Raft) admitAndAdd(ctx context.Context, id peer.ID, req membershipRequest) (membershipResponse, bool, error) {
	r.lockMembers(id)
	defer r.memberMu.Unlock()
	if resp, done, err := r.admit(ctx, id, req); done || err != nil {
		return resp, false, err
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
	revoked := r.fsm.State().Revoked
	for _, s := range r.Servers() {
		// Not a voter whose key is revoked, still in the configuration while its removal
		// waits: the answer stands over the joiner's replica, revocations included, until it
		// has caught up, so the key would be a member there meanwhile. It never leads again.
		if s.Voter && !revoked[s.ID.String()] {
			resp.Servers = append(resp.Servers, s.ID.String())
		}
	}
	resp.ClusterProof = r.answerProof(req, resp)
	// raft's applied index too: a replica whose state last came from a snapshot has an FSM index
	// below it (the joiner's trust would lapse before it is that far).
	resp.Index = max(r.fsm.index.Load(), r.raft.AppliedIndex())
	if r.hasServer(id) {
		return resp, true, nil
	}
	if r.cfg.Protect != nil {
		r.cfg.Protect(id)
	}
	addr := raft.ServerAddress(id.String())
	if err := r.await(context.Background(), r.raft.AddNonvoter(raft.ServerID(id.String()), addr, 0, r.t.Apply)); err != nil {
		return membershipResponse{}, false, fmt.Errorf("add %s: %w", id, err)
	}
	r.log.Info("added non-voter", "peer", id, "role", r.roleOf(id))
	r.gap("added", id)
	r.memberKick.kick() // protect it, reconcile the allow-list
	resp.Changed = true
	return resp, true, nil
}

// answerProof is the leader's proof of resp for a token joiner's request
// (membershipResponse.ClusterProof): "" without a nonce, or for a token
// whose record has no cluster key. It is called only for a joiner admit
// let in, so a member by now. For a token that is gone (revoked since the
// joiner was admitted: its answer was lost, or it restarted before it
// came) the cluster key its allow-list entry kept proves the answer, if
// this very token admitted it; a non-member with a revoked token never
// gets here (admit refuses it).
func (r *Raft) answerProof(req membershipRequest, resp membershipResponse) string {
	if req.TokenID == "" || req.Nonce == "" {
		return ""
	}
	st := r.fsm.State()
	t, ok := st.JoinTokens[req.TokenID]
	if !ok {
		m, member := st.Members[req.ID]
		if !member || m.Token != req.TokenID || m.ClusterKey == "" || st.Revoked[req.ID] {
			return ""
		}
		t = JoinToken{ClusterKey: m.ClusterKey}
	}
	return answerProof(t, req.TokenID, req.Nonce, req.ID, req.Via, st.ClusterID, resp.Leader, resp.Servers)
}

// gap runs the test hook (gapHook, nil outside tests) at one of the spots
// it names.
func (r *Raft) gap(where string, p peer.ID) {
	if h := r.gapHook.Load(); h != nil {
		(*h)(where, p)
	}
}

// lockMembers takes memberMu for a change concerning p (empty: unknown).
// The test hook learns first ("wait") that the change has reached the
// lock: while a test holds it in a gap, the change waits there, so the
// test can go on at once instead of waiting for a change the lock forbids.
func (r *Raft) lockMembers(p peer.ID) {
	r.gap("wait", p)
	r.memberMu.Lock()
}

// admit decides, on the leader, whether id may join; done means the answer
// is resp (pending approval). The caller holds memberMu.
func (r *Raft) admit(ctx context.Context, id peer.ID, req membershipRequest) (membershipResponse, bool, error) {
	st := r.fsm.State()
	if st.Revoked[id.String()] { // denied or evicted since the request was checked
		return membershipResponse{}, true, fmt.Errorf("%s is refused by this cluster", id)
	}
	if st.memberRole(id.String(), r.hasServer(id)) != "" {
		return membershipResponse{}, false, nil
	}
	add := MemberAdd{ID: id.String(), Role: RoleMember, Name: req.Name, At: r.now()}
	var why string
	switch {
	case req.TokenID != "":
		t, err := st.verifyJoinProof(req.TokenID, req.Proof, id.String(), req.Via, add.At)
		if err != nil {
			r.log.Warn("join token refused", "peer", id, "err", err)
			return membershipResponse{}, true, fmt.Errorf("%s: %w", tokenRefused, err)
		}
		add.Role, add.TokenID, why = t.Role, req.TokenID, "join token "+req.TokenID
	case st.AdmitMode() == AdmitLAN && req.LAN:
		why = "--admit lan"
	default:
		return membershipResponse{Pending: true, Fingerprint: Fingerprint(id)}, true, nil
	}
	r.gap("admit", id)
	cmd, err := NewCommand(OpMemberAdd, add)
	if err == nil {
		_, err = r.applyLocked(ctx, mustEncode(cmd))
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
		if err := r.await(context.Background(), r.raft.RemoveServer(raft.ServerID(id.String()), 0, r.t.Apply)); err != nil {
			return membershipResponse{}, fmt.Errorf("remove %s: %w", id, err)
		}
		changed = true
		r.log.Info("removed server", "peer", id)
		r.memberKick.kick()
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

// rejoin runs on a member that has seen no leader for a while: if a member
// of the same cluster ID knows a leader, ask to be added again (we may have
// been removed while away; for a member the request is a no-op). Only
// peers this node knows as members are asked: anyone can claim the cluster
// ID, and only a member's answer is trusted (requestMembership).
func (r *Raft) rejoin(ctx context.Context) {
	mine := r.fsm.State().ClusterID
	if mine == "" {
		return
	}
	for p, bp := range r.queryPeers(ctx) {
		if r.roleOf(p) != RoleMember {
			continue
		}
		if bp.answered && bp.info.ClusterID == mine && bp.info.Leader != "" && bp.info.Leader != r.id.String() {
			if _, err := r.requestMembership(ctx, p, false); err == nil {
				r.log.Info("asked to be re-added to the cluster", "via", p)
				return
			}
		}
	}
}

// allowRaft is the transport's check of a raft stream's or RPC's sender: mayRaft, and
// refusedRaft when it refuses.
func (r *Raft) allowRaft(p peer.ID) bool {
	if r.mayRaft(p) {
		return true
	}
	r.refusedRaft(p)
	return false
}

// refusedRaft: mayRaft refused p, a peer this node's replica does not know (no role, not
// revoked, not a server), that raft takes for the leader, or while raft knows no leader. A
// member whose replica lags (it was down while the leader left, hydra leave, and was approved
// again) judges the leader by a past allow-list once it has applied the leave, and refused it
// until it had seen no leader for PeerDrop (Run's rejoin). It asks a member of its replica
// to re-add it now, in the membership loop: the answer's leader and voters stand until this
// replica has applied the answer's index (expects). The refusal itself grants p nothing: the
// answer must come from a member this replica knows (requestMembership), as Run's rejoin's
// does. At most once per MemberPoll, and never for a revoked key or a worker.
func (r *Raft) refusedRaft(p peer.ID) {
	now := time.Now().UnixNano()
	last := r.askedAt.Load()
	if last != 0 && time.Duration(now-last) < r.t.MemberPoll {
		return // asked a moment ago: a flood of refused RPCs costs one atomic load each
	}
	if role, revoked := r.fsm.peerRole(p.String()); revoked || role != "" || !r.inCluster() {
		return
	}
	if l, ok := r.Leader(); ok && l != p {
		return // a leader this node takes: an outsider's stream asks nothing of the others
	}
	if !r.askedAt.CompareAndSwap(last, now) {
		return
	}
	r.askAgain.Store(true)
	r.memberKick.kick()
}
