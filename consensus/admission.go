package consensus

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Fingerprint is the short code of a node's key that a person compares
// between the joining machine's terminal and the approving member's UI
// (hydra approve FINGERPRINT): 40 bits of SHA-256 of the peer ID, as two
// groups of four base32 letters.
func Fingerprint(p peer.ID) string {
	h := sha256.Sum256([]byte("hydra-node\x00" + string(p)))
	s := base32.StdEncoding.EncodeToString(h[:5])
	return s[:4] + "-" + s[4:8]
}

// PendingNode is a node waiting for approval, as this node heard its join
// requests (directly or forwarded). Field names are part of the API.
type PendingNode struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Addrs       []string  `json:"addrs"`
	Fingerprint string    `json:"fingerprint"`
	LastSeen    time.Time `json:"last_seen"`
}

// Bounds of the join/approval protocol: a stranger can fill the pending
// list only up to maxPending entries, each forgotten pendingTTL after its
// last request, and may ask at most once per joinInterval.
const (
	maxPending   = 64
	pendingTTL   = 60 * time.Second
	joinInterval = 200 * time.Millisecond
	maxJoinAddrs = 16
)

// pendingList is the bounded, in-memory list of nodes waiting for approval.
type pendingList struct {
	mu    sync.Mutex
	nodes map[peer.ID]*PendingNode
	last  map[peer.ID]time.Time // last request, for the rate limit
}

// allow reports whether p may send a join request now (rate limit).
func (l *pendingList) allow(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[peer.ID]time.Time{}
	}
	if t, ok := l.last[p]; ok && now.Sub(t) < joinInterval {
		return false
	}
	if len(l.last) >= 4*maxPending {
		for q, t := range l.last {
			if now.Sub(t) > joinInterval {
				delete(l.last, q)
			}
		}
		if len(l.last) >= 4*maxPending {
			return false
		}
	}
	l.last[p] = now
	return true
}

func (l *pendingList) add(n PendingNode, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodes == nil {
		l.nodes = map[peer.ID]*PendingNode{}
	}
	l.expireLocked(now)
	id, err := peer.Decode(n.ID) // keyed as remove is called: by the peer ID, not its text
	if err != nil {
		return false
	}
	if _, ok := l.nodes[id]; !ok && len(l.nodes) >= maxPending {
		return false
	}
	n.LastSeen = now
	l.nodes[id] = &n
	return true
}

func (l *pendingList) remove(p peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.nodes, p)
}

func (l *pendingList) expireLocked(now time.Time) {
	for p, n := range l.nodes {
		if now.Sub(n.LastSeen) > pendingTTL {
			delete(l.nodes, p)
		}
	}
}

func (l *pendingList) list(now time.Time) []PendingNode {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked(now)
	out := make([]PendingNode, 0, len(l.nodes))
	for _, n := range l.nodes {
		c := *n
		c.Addrs = append([]string(nil), n.Addrs...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Pending returns the nodes waiting for approval that this node knows of
// (admitted and refused ones left out).
func (r *Raft) Pending() []PendingNode {
	var out []PendingNode
	for _, n := range r.pending.list(time.Now()) {
		id, err := peer.Decode(n.ID)
		if err != nil {
			continue
		}
		n.ID = id.String()
		if r.Access(id) == p2p.AccessOutsider {
			out = append(out, n)
		}
	}
	return out
}

// Access classifies p for the p2p layer: itself, members of the allow-list
// and servers of the raft configuration are members (a cluster created
// before the allow-list has only the latter), revoked keys are refused,
// and while this node joins, the leader and voters named in its admission
// answer count as members so that they may replicate to it (expects).
//
// The answer comes before a revocation: until the replica has applied what
// the answer's leader had, a revocation it holds is history the answer has
// seen past. A leader once removed and approved again is revoked at the
// indexes in between; a joiner replaying the log (or restoring a snapshot
// taken then) refused that leader there, closed its connections, and never
// got the approval that lies beyond (the chaos harness, seed 43).
func (r *Raft) Access(p peer.ID) p2p.Access {
	if p == r.id || checksOff || r.expects(p) {
		return p2p.AccessMember
	}
	role, revoked := r.fsm.peerRole(p.String())
	switch {
	case revoked:
		return p2p.AccessRefused
	case role != "":
		return p2p.AccessMember
	}
	if r.hasServer(p) {
		return p2p.AccessMember
	}
	return p2p.AccessOutsider
}

// expects reports whether p is named by this node's admission answer
// (expected) while the answer stands in for the roles this node's replica
// cannot see yet: until the replica has applied what the answer's leader had
// (expectedUntil). Its replay of the cluster's history passes through past
// allow-lists, where the leader may have left for a while, or where this
// node's own earlier membership appears; the answer, not those, says who
// leads now. An older leader's answer names no index: it stands until the
// replica holds this node's own allow-list entry. From then on the roles and
// the configuration decide, so that a server that leaves later (hydra
// leave, which revokes nothing) is not trusted here for good.
func (r *Raft) expects(p peer.ID) bool {
	if _, ok := r.expected.Load(p); !ok {
		return false
	}
	if until := r.expectedUntil.Load(); until > 0 {
		return r.fsm.index.Load() < until
	}
	own, _ := r.fsm.peerRole(r.id.String())
	return own == ""
}

// forgetExpected clears expected once it no longer stands (expects): the
// replica has applied the answer's index, or, for an older leader's answer,
// holds this node's own allow-list entry. The FSM calls it whenever the
// allow-list changes, passedIndex after each entry, requestMembership once it
// filled expected. Only ignoring the answer's peers would not do: if this
// node's entry is removed later, they would count as members here again,
// though the answer only named who would replicate to a joiner.
func (r *Raft) forgetExpected() {
	if until := r.expectedUntil.Load(); until > 0 {
		if r.fsm.index.Load() >= until && r.expectedUntil.CompareAndSwap(until, 0) {
			r.expected.Clear()
		}
		return
	}
	if own, _ := r.fsm.peerRole(r.id.String()); own != "" {
		r.ownSeen.Add(1)
		r.expected.Clear()
	}
}

// passedIndex is called by the FSM after each entry it applies (index): the
// entry that reaches the answer's index ends the answer's standing.
func (r *Raft) passedIndex(index uint64) {
	if until := r.expectedUntil.Load(); until > 0 && index >= until {
		r.forgetExpected()
	}
}

// isMember is Access(p) == AccessMember, the check of every members-only
// protocol handler.
func (r *Raft) isMember(p peer.ID) bool { return r.Access(p) == p2p.AccessMember }

// mayRaft reports whether p may send this node raft RPCs. Every raft RPC
// is one a leader or a candidate sends, so only a peer with the member
// role may: never a worker, which never holds a vote (an AppendEntries or
// InstallSnapshot from it would take the cluster over), never an outsider.
// Being a server of the local configuration is not required: a follower
// that lags must accept a new leader it has not yet seen added. A server
// with no allow-list entry is a member (a cluster created before the
// allow-list: memberRole), and while this node joins, so are the leader
// and voters its admission answer named (expects), whatever the roles its
// replica holds until it is that far (Access).
func (r *Raft) mayRaft(p peer.ID) bool {
	if p == r.id || checksOff || r.expects(p) {
		return true
	}
	role, revoked := r.fsm.peerRole(p.String())
	switch {
	case revoked:
		return false
	case role != "":
		return role == RoleMember
	}
	return r.hasServer(p)
}

// roleOf returns p's role ("" for an outsider or a refused key).
func (r *Raft) roleOf(p peer.ID) string {
	st := r.fsm.State()
	return st.memberRole(p.String(), r.hasServer(p))
}

// Role returns this node's own role: member, worker, or "" while it waits
// for approval.
func (r *Raft) Role() string { return r.roleOf(r.id) }

// PeerRole returns p's role (member or worker), or "" for a peer that is
// not admitted: for protocols that, beyond membership, only a member may
// use (a worker proposes nothing and holds no credential).
func (r *Raft) PeerRole(p peer.ID) string { return r.roleOf(p) }

// isLAN reports whether p's connections come from a private or loopback
// address (the --admit lan rule).
func (r *Raft) isLAN(p peer.ID) bool {
	conns := r.host.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return false
	}
	for _, c := range conns {
		a := c.RemoteMultiaddr()
		if !manet.IsPrivateAddr(a) && !manet.IsIPLoopback(a) {
			return false
		}
	}
	return true
}

// ErrForbidden marks a command the sender may not propose.
var ErrForbidden = errors.New("forbidden")

// ErrNoSuchNode: no node (pending for Approve and Deny) has the fingerprint or ID given.
var ErrNoSuchNode = errors.New("no such node")

// ErrInvalid marks a request that is wrong in itself (a role that does not exist, a fingerprint
// several waiting nodes share, a node evicting itself): repeating it cannot succeed, and the
// API answers it 400. Its text is the error's alone (kind).
var ErrInvalid = errors.New("invalid request")

// ErrConflict marks a request the cluster's state refuses (a node approved as a worker that is a
// member already, the only server leaving): the API answers it 409. Its text is the error's
// alone (kind).
var ErrConflict = errors.New("conflicts with the cluster's state")

// kindError is an error that errors.Is also takes for kind, with the error's text alone, so that
// a caller can tell its kind apart without the message repeating it.
type kindError struct {
	error
	kind error
}

func (e kindError) Unwrap() []error { return []error{e.error, e.kind} }

// kinded marks err with kind (ErrInvalid, ErrConflict), keeping its text.
func kinded(kind, err error) error { return kindError{err, kind} }

// authorize is the leader's check of a proposed command: who sent it (from,
// authenticated by libp2p; this node for its own proposals) and the API
// credential the request carried. A node only registers itself (and
// removes an allow-list entry, its own too, only with an admin credential), a worker
// proposes nothing but its own registration, and the admin ops (admit,
// evict, credentials, join tokens, admission mode, settings) need an admin
// credential, as do the App's AdminOps (cancel, delete, trust reset);
// this node's own proposals were checked by its HTTP layer.
func (r *Raft) authorize(from peer.ID, data []byte, auth string) error {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return err
	}
	if cmd.Op == OpBatch {
		return fmt.Errorf("%w: a batch entry is built by the leader's group commit only", ErrForbidden)
	}
	if from == r.id || checksOff {
		return nil
	}
	st := r.fsm.State()
	role := st.memberRole(from.String(), r.hasServer(from))
	if role == "" {
		return fmt.Errorf("%w: %s is not a member of this cluster", ErrForbidden, from)
	}
	admin := st.IsAdmin(auth)
	switch cmd.Op {
	case OpInit:
		return fmt.Errorf("%w: init is proposed by the founder only", ErrForbidden)
	case OpNodeRegister, OpNodeRemove:
		var m struct {
			ID string `json:"id"`
		}
		if err := strictUnmarshal(cmd.Payload, &m); err != nil {
			return err
		}
		if m.ID != from.String() && !admin {
			return fmt.Errorf("%w: %s may only register or remove itself", ErrForbidden, from)
		}
		return nil
	case OpCredAdd:
		var c CredAdd
		if err := strictUnmarshal(cmd.Payload, &c); err != nil {
			return err
		}
		if admin || (role == RoleMember && c.Cred.Node == from.String() && c.Cred.Role == RoleAdmin && c.ID == nodeCredID(from)) {
			return nil // a member's own node credential (DATA/api-token)
		}
	case OpTokenAdd:
		if admin {
			return checkTokenAdd(st, cmd.Payload)
		}
	case OpMemberAdd, OpMemberRemove, OpCredRemove, OpTokenRemove, OpAdmit, OpSettings:
		// A node leaves through the join protocol (Leave), whose leader
		// removes the server before its allow-list entry: a server left
		// without an entry counts as a member (memberRole), so a worker
		// that could drop its own entry here would become one.
		if admin {
			return nil
		}
	default: // job ops
		if role != RoleMember {
			return fmt.Errorf("%w: a %s proposes no job commands", ErrForbidden, role)
		}
		if r.cfg.CheckForwarded != nil && cmd.Op >= OpAppFirst {
			if err := r.cfg.CheckForwarded(cmd.Op, cmd.Payload); err != nil {
				return fmt.Errorf("%w: %s from %s: %v", ErrForbidden, cmd.Op, from, err)
			}
		}
		if !slices.Contains(r.cfg.AdminOps, cmd.Op) || admin {
			return nil
		}
	}
	return fmt.Errorf("%w: %s needs an admin credential", ErrForbidden, cmd.Op)
}

// nodeCredID is the ID of the admin credential node p writes to its
// DATA/api-token.
func nodeCredID(p peer.ID) string {
	s := strings.ToLower(p.String())
	if len(s) > 12 {
		s = s[len(s)-12:]
	}
	return "node-" + s
}

// ApplyAs is Apply on behalf of a person with an admin credential: checked
// here, and again by the leader when this node is not the leader.
func (r *Raft) ApplyAs(ctx context.Context, cmd Command, auth string) ([]byte, error) {
	st := r.fsm.State()
	if !st.IsAdmin(auth) {
		return nil, fmt.Errorf("%w: %w: %s needs an admin credential", ErrRejected, ErrForbidden, cmd.Op)
	}
	if cmd.Op == OpTokenAdd {
		if err := checkTokenAdd(st, cmd.Payload); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	return r.apply(ctx, cmd, auth)
}

// findPending resolves a fingerprint or peer ID among the pending nodes
// (or, for a peer ID, anyone), and with revoked among the evicted and denied
// nodes (approving one again: revokedWithFingerprint) and the admitted ones
// too (membersWithFingerprint). A fingerprint that
// two nodes share is refused: a fingerprint is 40 bits, so a stranger that
// sees a joiner's can grind a key with the same one, and approving either
// would be a guess (the peer ID tells them apart).
func (r *Raft) findPending(key string, revoked bool) (peer.ID, string, error) {
	key = strings.TrimSpace(key)
	var found []PendingNode
	for _, n := range r.Pending() {
		if strings.EqualFold(n.Fingerprint, key) || n.ID == key {
			found = append(found, n)
		}
	}
	which := "waiting for approval"
	if revoked {
		found = append(found, r.revokedWithFingerprint(key, found)...)
		found = append(found, r.membersWithFingerprint(key, found)...)
		which = "waiting for approval, removed or admitted"
	}
	switch len(found) {
	case 0:
	case 1:
		return mustDecode(found[0].ID), found[0].Name, nil
	default:
		ids := make([]string, len(found))
		for i, n := range found {
			ids[i] = n.ID
		}
		return "", "", kinded(ErrInvalid, fmt.Errorf("%d nodes %s have fingerprint %q: give the peer ID of the one to act on (%s)", len(found), which, key, strings.Join(ids, ", ")))
	}
	if p, err := peer.Decode(key); err == nil {
		return p, "", nil
	}
	if revoked {
		return "", "", fmt.Errorf("%w: none waiting for approval or removed has fingerprint %q", ErrNoSuchNode, key)
	}
	return "", "", fmt.Errorf("%w: none waiting for approval has fingerprint %q", ErrNoSuchNode, key)
}

func mustDecode(s string) peer.ID {
	p, _ := peer.Decode(s)
	return p
}

// Approve admits the pending node with this fingerprint (or peer ID) with
// role member or worker; auth is the admin credential of the person asking.
func (r *Raft) Approve(ctx context.Context, key, role, auth string) (peer.ID, error) {
	if role == "" {
		role = RoleMember
	}
	if role != RoleMember && role != RoleWorker {
		return "", kinded(ErrInvalid, fmt.Errorf("role %q: want member or worker", role))
	}
	p, name, err := r.findPending(key, true)
	if err != nil {
		return "", err
	}
	// A node admitted already with the other role is refused (409): the FSM
	// would keep its role, and a raft server not yet in the allow-list (a
	// joiner, counted as a member) would become a worker that every member
	// refuses raft streams from. Asked of this replica first, and again once
	// the entry is applied here (the leader's state may differ).
	otherRole := func() error {
		if cur := r.roleOf(p); cur != "" && cur != role {
			return kinded(ErrConflict, fmt.Errorf("%s is a %s already: remove it (hydra remove), then approve it as a %s", p, cur, role))
		}
		return nil
	}
	if err := otherRole(); err != nil {
		return "", err
	}
	// A node this replica lists as admitted with that role is approved all
	// the same: a follower's replica may lag the leader's (it has not
	// applied the node's removal yet), and its "admitted already" answered
	// success for a node the cluster had removed, which never came back
	// (found by the chaos harness). A repeat changes nothing in the FSM.
	cmd, err := NewCommand(OpMemberAdd, MemberAdd{ID: p.String(), Role: role, Name: name, At: r.now()})
	if err != nil {
		return "", err
	}
	if _, err := r.ApplyAs(ctx, cmd, auth); err != nil {
		return "", fmt.Errorf("approve %s: %w", p, err)
	}
	r.pending.remove(p)
	if err := otherRole(); err != nil {
		return "", err
	}
	r.log.Info("node approved", "peer", p, "role", role)
	return p, nil
}

// Deny refuses a pending node's key for good (until approved explicitly).
func (r *Raft) Deny(ctx context.Context, key, auth string) (peer.ID, error) {
	p, _, err := r.findPending(key, false)
	if err != nil {
		return "", err
	}
	return p, r.Evict(ctx, p, auth)
}

// Evict removes node p from the cluster and refuses its key from then on:
// its membership and credential are dropped at once (every member's gater
// refuses it as soon as the entry is applied), and the leader removes it
// from the raft configuration. When p leads, it first hands leadership to
// another voter, which commits the eviction and removes it
// (handOverFromRevoked); the cluster's only voter cannot be evicted.
func (r *Raft) Evict(ctx context.Context, p peer.ID, auth string) error {
	if p == r.id {
		return kinded(ErrInvalid, errors.New("a node cannot evict itself: use hydra leave"))
	}
	if r.votes(p) && len(r.successors(p)) == 0 {
		return kinded(ErrConflict, fmt.Errorf("%s is the only voter of the cluster: it cannot be removed", p))
	}
	cmd, err := NewCommand(OpMemberRemove, MemberRemove{ID: p.String(), Revoke: true})
	if err != nil {
		return err
	}
	if _, err := r.ApplyAs(ctx, cmd, auth); err != nil {
		return fmt.Errorf("evict %s: %w", p, err)
	}
	r.pending.remove(p)
	r.log.Info("node evicted", "peer", p)
	return nil
}

// ensureNodeCred registers this member's own admin credential (the secret
// is Config.NodeToken, written by the node to DATA/api-token once it is
// registered: NodeTokenActive). Workers and nodes waiting for approval have
// none: nil, nothing to do. The error is a registration that failed.
func (r *Raft) ensureNodeCred(ctx context.Context) error {
	tok := r.NodeToken()
	st := r.fsm.State()
	if tok == "" || !st.Initialized() || st.memberRole(r.id.String(), r.hasServer(r.id)) != RoleMember {
		return nil
	}
	if _, _, ok := st.CredFor(tok); ok {
		return nil
	}
	if st.Retired[HashSecret(tok)] { // revoked: make a new one (the node rewrites DATA/api-token)
		tok = randomHex(32)
		r.nodeTok.Store(&tok)
		r.log.Warn("this node's API credential was revoked: registering a new one")
	}
	cmd, err := NewCommand(OpCredAdd, CredAdd{ID: nodeCredID(r.id), Cred: Cred{Role: RoleAdmin, Hash: HashSecret(tok), Node: r.id.String(), Created: r.now()}})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*r.t.Apply)
	defer cancel()
	if _, err := r.Apply(cctx, cmd); err != nil {
		return fmt.Errorf("register this node's API credential: %w", err)
	}
	return nil
}

// NodeTokenActive reports whether Config.NodeToken is an admin credential
// of the cluster (so the node may write it to DATA/api-token).
func (r *Raft) NodeTokenActive() bool {
	tok := r.NodeToken()
	if tok == "" {
		return false
	}
	st := r.fsm.State()
	_, c, ok := st.CredFor(tok)
	return ok && c.Role == RoleAdmin
}

// NodeToken is this node's admin credential: Config.NodeToken, or the new
// one made after it was revoked.
func (r *Raft) NodeToken() string {
	if p := r.nodeTok.Load(); p != nil {
		return *p
	}
	return r.cfg.NodeToken
}

// Waiting reports whether this node asked to join and waits for approval.
func (r *Raft) Waiting() bool { return r.waiting.Load() && r.Role() == "" }
