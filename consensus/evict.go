package consensus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Evicted servers leave the raft configuration: the leader removes them (reconcileMembers), and
// a leader asked to commit its own eviction hands leadership over first (handOverFromRevoked).

// votes reports whether p is a voter of the local configuration.
func (r *Raft) votes(p peer.ID) bool {
	for _, s := range r.Servers() {
		if s.ID == p {
			return s.Voter
		}
	}
	return false
}

// successors are the voters of the local configuration other than p whose
// key is not revoked: those that may lead once p is gone.
func (r *Raft) successors(p peer.ID) []raft.Server {
	cfg, err := r.configuration()
	if err != nil {
		return nil
	}
	var out []raft.Server
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter || s.ID == raft.ServerID(p.String()) {
			continue
		}
		if _, revoked := r.fsm.peerRole(string(s.ID)); !revoked {
			out = append(out, s)
		}
	}
	return out
}

// revokesSelf reports whether data, a proposal, evicts this node (hydra
// remove of the leader).
func (r *Raft) revokesSelf(data []byte) bool {
	id, ok := evictee(data)
	return ok && id == r.id.String()
}

// evictee returns the ID of the node data, a proposal, evicts: a MemberRemove that revokes its
// key (hydra remove). Any other proposal, or one that does not decode, evicts nobody.
func evictee(data []byte) (string, bool) {
	if len(data) < 2 || Op(data[1]) != OpMemberRemove {
		return "", false
	}
	var m MemberRemove
	if strictUnmarshal(data[2:], &m) != nil || !m.Revoke {
		return "", false
	}
	return m.ID, true
}

// evictionDone runs on the leader before it proposes data: true when data evicts (with Revoke) a
// node whose eviction is applied already and would change nothing (its key revoked; no
// membership, node entry or credential of it left). A repeated hydra remove — a user's or a
// script's retry, the first one's answer lost — then answers as the first one did, without a
// new entry: the first was accepted, and the leader's removal of the node from the configuration
// (reconcileMembers) is under way. Proposed again it met evictionWaits, which judges a removal
// still to come: with another voter down, quorumAfterRemoval refused the repeat (409) although
// the removal was decided, and while that removal waits for a quorum the new entry could not
// commit either (503 at the deadline).
func (r *Raft) evictionDone(data []byte) bool {
	id, ok := evictee(data)
	if !ok {
		return false
	}
	st := r.fsm.State()
	if _, ok := st.Members[id]; ok || !st.Revoked[id] {
		return false
	}
	if _, ok := st.Nodes[id]; ok {
		return false
	}
	for _, c := range st.Creds {
		if c.Node == id {
			return false
		}
	}
	return true
}

// evictionWaits runs on the leader before it commits data, a proposal: an
// eviction of a voter waits (ErrConflict, with what it waits for) while
// another voter whose key is revoked is still in the configuration, its
// removal not done yet (reconcileMembers removes it once a quorum of the
// configuration that follows answers). Both revoked, neither could vote
// any more (every member refuses their keys), and a configuration of three
// voters, two of them revoked, has no quorum left: no leader, for good (a
// chaos run met it: an eviction while a voter's disk was full, then
// another). One at a time, the second eviction comes once the first has
// left, and the configuration it leaves has the quorum it needs.
func (r *Raft) evictionWaits(data []byte) error {
	id, ok := evictee(data)
	if !ok {
		return nil
	}
	p, err := peer.Decode(id)
	if err != nil {
		return nil
	}
	if err := r.revokedVoterWaits(p, fmt.Sprintf("remove %s once it has; retry in a few seconds", p)); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := r.quorumAfterRemoval(p); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return nil
}

// leaveWaits runs on the leader, under memberMu, before it removes server p
// from the configuration because p leaves (hydra leave): a voter's leave
// waits while another voter whose key is revoked is still in the
// configuration, for the reason evictionWaits gives. Its removal would
// leave that voter among fewer, and a configuration of two voters, one of
// them refused by everyone, commits nothing, not even the removal of the
// revoked one: no leader, for good. The leaver retries (Leave) and goes
// once the evicted voter has left.
func (r *Raft) leaveWaits(p peer.ID) error {
	if err := r.revokedVoterWaits(p, fmt.Sprintf("%s leaves once it has; retry in a few seconds", p)); err != nil {
		return err
	}
	return r.quorumAfterRemoval(p)
}

// revokedVoterWaits is the rule evictionWaits, leaveWaits and autopilotChangeWaits share: a
// change that takes voter p's vote (a removal, a leave, a demotion) waits (ErrConflict) while
// another voter whose key is revoked is still in the configuration; then says what comes once
// that one has left. A non-voter's change takes no vote: it never waits.
func (r *Raft) revokedVoterWaits(p peer.ID, then string) error {
	if !r.votes(p) {
		return nil
	}
	if s, ok := r.revokedVoterBeside(p); ok {
		return kinded(ErrConflict, fmt.Errorf("the voter %s was removed and has not left the configuration yet (that needs a quorum of the voters that remain): %s", s, then))
	}
	return nil
}

// quorumRefused is in the text of every refusal of quorumAfterRemoval: a leaver recognises it in
// the leader's answer, which reaches it as text only (askLeave).
const quorumRefused = "would leave the cluster without a quorum"

// quorumAfterRemoval runs on the leader, under memberMu (evictionWaits, leaveWaits), before a
// voter p is removed (hydra remove, hydra leave): it refuses (ErrConflict) a removal after which
// fewer of the voters that remain are reachable than a quorum of them. Three voters, one of them
// down: removing a healthy one left two, one of them down, that commit nothing — not even the
// dead one's removal — until it came back (etcd's --strict-reconfig-check refuses the same).
// Removing the unreachable voter itself passes: the others are a quorum of what remains.
// Reachable is what the leader knows (reachable): itself, and a voter that answered one of this
// leadership's AppendEntries (a heartbeat goes every Heartbeat/10) within LastContactMax,
// autopilot's health threshold, holding every entry it was sent (a full disk is not). A
// voter whose key is revoked is not counted among those that remain: it leaves the configuration
// first (reconcileMembers; evictionWaits and leaveWaits wait for it, and a leader that leaves
// meanwhile hands leadership to a voter whose key is not revoked). A leadership
// younger than LastContactMax has not heard every voter yet: the check waits until the
// leadership is that old before it refuses.
func (r *Raft) quorumAfterRemoval(p peer.ID) error {
	if !r.votes(p) {
		return nil
	}
	deadline := time.Unix(0, r.leadStart.Load()).Add(r.t.LastContactMax)
	for {
		remain, down := r.unreachableBeside(p)
		if len(remain) == 0 || len(remain)-len(down) >= len(remain)/2+1 {
			return nil // a quorum stays (or no configuration: raft refuses the change itself)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return kinded(ErrConflict, r.quorumError(p, remain, down))
		}
		t := time.NewTimer(min(wait, r.t.Poll))
		select {
		case <-r.closed:
			t.Stop()
			return ErrShutdown
		case <-t.C:
		}
	}
}

// unreachableBeside returns the voters that would remain once p is gone (successors: those
// whose key is not revoked), and those of them the leader does not count as reachable
// (quorumAfterRemoval). None when the configuration cannot be read.
func (r *Raft) unreachableBeside(p peer.ID) (remain, down []raft.ServerID) {
	now := time.Now()
	for _, s := range r.successors(p) {
		remain = append(remain, s.ID)
		if !r.reachable(s.ID, now) {
			down = append(down, s.ID)
		}
	}
	return remain, down
}

// Unreachable returns the voters whose key is not revoked that this node, as the leader, does not
// count as reachable (no answer to this leadership's AppendEntries within LastContactMax, or
// behind on entries it could not store): those a removal's quorum check counts out
// (quorumAfterRemoval). Nil on a follower, which hears from nobody but
// the leader.
func (r *Raft) Unreachable() []peer.ID {
	if !r.IsLeader() {
		return nil
	}
	_, down := r.unreachableBeside("")
	out := make([]peer.ID, 0, len(down))
	for _, id := range down {
		if p, err := peer.Decode(string(id)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// reachable reports whether the leader counts server id as reachable at now, able to take part
// in a commit: itself, or a server that answered one of this leadership's AppendEntries (its
// term; an answer to an earlier leadership of this node does not count) within LastContactMax
// while holding every entry the leader had sent it (transport.lastCaughtUp). A voter whose disk
// is full still answers heartbeats, but not the appends it cannot store.
func (r *Raft) reachable(id raft.ServerID, now time.Time) bool {
	if string(id) == r.id.String() {
		return true
	}
	return now.Sub(r.trans.lastCaughtUp(id, r.raft.CurrentTerm())) < r.t.LastContactMax
}

// quorumError is quorumAfterRemoval's refusal of p's removal: the voters that would remain, those
// of them unreachable (by name where registered), and the way out.
func (r *Raft) quorumError(p peer.ID, remain, down []raft.ServerID) error {
	st := r.fsm.State()
	names := make([]string, len(down))
	for i, id := range down {
		names[i] = string(id)
		if n := st.Nodes[string(id)].Name; n != "" {
			names[i] = fmt.Sprintf("%s (%s)", n, id)
		}
	}
	has := "have"
	if len(down) == 1 {
		has = "has"
	}
	return fmt.Errorf("removing %s %s: of the %d voters that would remain, %d %s not answered the leader in the last %s (%s), and a quorum of them needs %d reachable; remove the unreachable voter first (hydra remove %s), or bring it back, then retry",
		p, quorumRefused, len(remain), len(down), has, r.t.LastContactMax, strings.Join(names, ", "), len(remain)/2+1, down[0])
}

// revokedVoterBeside returns a voter of the configuration other than p whose
// key is revoked (its removal from the configuration is not done yet).
func (r *Raft) revokedVoterBeside(p peer.ID) (raft.ServerID, bool) {
	cfg, err := r.configuration()
	if err != nil {
		return "", false
	}
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter || s.ID == raft.ServerID(p.String()) {
			continue
		}
		if _, revoked := r.fsm.peerRole(string(s.ID)); revoked {
			return s.ID, true
		}
	}
	return "", false
}

// handOverFromRevoked runs on a leader asked to commit its own eviction
// (applyLocal). It must not: the others refuse its key once they apply the
// entry, so it could neither replicate its own removal from the
// configuration to them nor hand leadership over, and while it is still
// listed as a voter they may lack a quorum (two voters: the survivor alone
// can never win an election) — no leader for good. So it hands leadership
// to a voter whose key is not revoked first; the caller answers
// ErrNotLeader, the proposer retries on the new leader, which commits the
// eviction and then removes this node from the configuration
// (reconcileServer). The error is a transfer that failed (retried), or
// ErrRejected when no other voter may lead (the eviction would leave the
// cluster without a voter).
func (r *Raft) handOverFromRevoked() error {
	to := r.successors(r.id)
	if len(to) == 0 {
		return fmt.Errorf("%w: %w", ErrRejected, kinded(ErrConflict, errors.New("the leader is the only voter of the cluster: it cannot be removed")))
	}
	if err := r.handOverTo(to, "before this node's eviction"); err != nil {
		return fmt.Errorf("hand leadership over before this node's eviction: %w", err)
	}
	return nil
}

// handOverForLeave runs on a leader that leaves (Leave): raft's own pick
// (LeadershipTransfer: the most caught-up voter) unless an evicted voter is
// still in the configuration or a voter does not answer. Raft may pick
// either (among voters equally caught up, the first of the configuration: a
// voter that died in an idle cluster is as caught up as the others), which
// cannot take over: the transfer fails and the leave with it, every time it
// is asked. Then leadership goes to a voter whose key is not revoked
// (successors), those that answer first (reachable).
func (r *Raft) handOverForLeave() error {
	to := r.successors(r.id)
	now := time.Now()
	var up, down []raft.Server
	for _, s := range to {
		if r.reachable(s.ID, now) {
			up = append(up, s)
		} else {
			down = append(down, s)
		}
	}
	if _, ok := r.revokedVoterBeside(r.id); !ok && len(down) == 0 {
		return r.raft.LeadershipTransfer().Error()
	}
	return r.handOverTo(append(up, down...), "before this node leaves")
}

// handOverTo hands leadership to the first of to that takes it; why is
// logged. The error is every transfer that failed.
func (r *Raft) handOverTo(to []raft.Server, why string) error {
	var errs []error
	for _, s := range to {
		err := r.raft.LeadershipTransferToServer(s.ID, s.Address).Error()
		if err == nil {
			r.log.Info("handed leadership over "+why, "to", s.ID)
			return nil
		}
		errs = append(errs, fmt.Errorf("to %s: %w", s.ID, err))
	}
	if len(errs) == 0 {
		return errors.New("no voter may lead")
	}
	return errors.Join(errs...)
}

// removeEvictedNow runs on the leader once it has committed data, a proposal: an eviction (a
// MemberRemove that revokes) of a server of the configuration is followed at once by that
// server's removal (reconcileServer, on its own goroutine: the caller holds memberMu), not at
// the membership loop's next look, up to MemberPoll later and more on a loaded machine. Every
// member refuses the evicted key from the entry on, so until it is out the configuration counts
// a voter nobody hears: of two voters, the leader alone could not keep its lease and stepped
// down, and the survivor, whose configuration still wanted the evicted voter's vote, was never
// elected again: no leader, for good (chaos seed 83). A removal that fails here is retried by
// the membership loop (reconcileMembers).
func (r *Raft) removeEvictedNow(data []byte) {
	id, ok := evictee(data)
	if !ok {
		return
	}
	p, err := peer.Decode(id)
	if err != nil || p == r.id || !r.hasServer(p) {
		return
	}
	r.spawn(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*r.t.Apply)
		defer cancel()
		_ = r.reconcileServer(ctx, p, "") // it logs a failure; the membership loop tries again
	})
}

// reconcileMembers runs on the leader: servers whose key is revoked leave
// the raft configuration (never the leader itself: it hands leadership
// over before its eviction commits, handOverFromRevoked), and servers of a cluster created before the
// allow-list are written into it (an in-place upgrade). The servers and the
// state it reads are only a filter: each change is decided again under
// memberMu (reconcileServer), like every other membership change. The
// error is the first change that failed (the membership loop tries again
// soon).
func (r *Raft) reconcileMembers(ctx context.Context) error {
	st := r.fsm.State()
	if !st.Initialized() {
		return nil
	}
	var first error
	for _, s := range r.Servers() {
		id := s.ID.String()
		_, listed := st.Members[id]
		if (st.Revoked[id] && s.ID != r.id) || (!st.Revoked[id] && !listed) {
			first = cmp.Or(first, r.reconcileServer(ctx, s.ID, st.Nodes[id].Name))
		}
	}
	return first
}

// reconcileServer removes server p if its key is revoked, or writes it
// into the allow-list as a member if it has no entry there (name: its
// registered name). memberMu is held from the check to the change, one
// server at a time so that a long reconcile does not hold up joins: a
// pre-allow-list server that left or was removed since reconcileMembers
// read the configuration (a leave removes no entry such a server never
// had) is no longer a server here and gets no entry, which would make it
// a member again.
func (r *Raft) reconcileServer(ctx context.Context, p peer.ID, name string) error {
	r.gap("reconcile", p)
	r.lockMembers(p)
	defer r.memberMu.Unlock()
	if !r.hasServer(p) {
		return nil
	}
	role, revoked := r.fsm.peerRole(p.String())
	switch {
	case revoked && p != r.id:
		if _, err := r.removeServer(ctx, p); err != nil {
			r.log.Warn("removing an evicted server failed", "peer", p, "err", err)
			return err
		}
	case !revoked && role == "":
		cmd, err := NewCommand(OpMemberAdd, MemberAdd{ID: p.String(), Role: RoleMember, Name: name, At: r.now()})
		if err == nil {
			_, err = r.applyLocked(ctx, mustEncode(cmd))
		}
		if err != nil {
			r.log.Debug("recording a server in the allow-list failed", "peer", p, "err", err)
			return fmt.Errorf("record %s in the allow-list: %w", p, err)
		}
	}
	return nil
}
