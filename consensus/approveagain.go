package consensus

import (
	"fmt"
	"iter"
	"maps"
	"sort"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// revokedWithFingerprint returns the evicted or denied nodes (the replicated
// revocation list) whose fingerprint is key and that found does not hold
// already, so that `hydra approve FINGERPRINT` admits again a node that
// `hydra remove FINGERPRINT` evicted: its key is refused on every transport,
// so it never waits for approval again and the pending list alone could not
// resolve its fingerprint. Only a revoked peer ID matches; a stranger's key
// ground to the same fingerprint and waiting for approval is in found too, and
// findPending then refuses the fingerprint as ambiguous.
func (r *Raft) revokedWithFingerprint(key string, found []PendingNode) []PendingNode {
	return withFingerprint(maps.Keys(r.fsm.State().Revoked), key, found)
}

// membersWithFingerprint returns the admitted nodes (the replicated
// allow-list) whose fingerprint is key and that found does not hold already,
// so that `hydra approve FINGERPRINT` of a node admitted already answers as
// approving it by peer ID does (nothing to change for its role, 409 for the
// other role) rather than 404, and a stranger waiting for approval with a
// key ground to a member's fingerprint is refused as ambiguous, not approved.
func (r *Raft) membersWithFingerprint(key string, found []PendingNode) []PendingNode {
	return withFingerprint(maps.Keys(r.fsm.State().Members), key, found)
}

// withFingerprint returns, sorted by peer ID, the peers of ids whose
// fingerprint is key and that found does not hold already.
func withFingerprint(ids iter.Seq[string], key string, found []PendingNode) []PendingNode {
	if key == "" {
		return nil
	}
	var out []PendingNode
	for id := range ids {
		p, err := peer.Decode(id)
		if err != nil || !strings.EqualFold(Fingerprint(p), key) {
			continue
		}
		dup := false
		for _, f := range found {
			dup = dup || f.ID == id
		}
		if !dup {
			out = append(out, PendingNode{ID: id, Fingerprint: Fingerprint(p)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// workerVoteWaits runs on the leader, under memberMu, before it commits data, a proposal: a
// MemberAdd that admits a voter of the configuration as a worker waits (ErrConflict) until that
// server has left the configuration. Only an evicted voter whose removal is not done yet can be
// one (hydra remove, then hydra approve --role worker, as the refusal of approving a member as a
// worker says to do). Committed, the entry cleared its revocation, so its removal never came
// (reconcileMembers removes revoked keys only), and the promoter keeps a voter that may not vote
// while it is short of others: a worker held a raft vote, counted in every commit's quorum.
func (r *Raft) workerVoteWaits(data []byte) error {
	if len(data) < 2 || Op(data[1]) != OpMemberAdd {
		return nil
	}
	var m MemberAdd
	if strictUnmarshal(data[2:], &m) != nil || m.Role != RoleWorker {
		return nil
	}
	p, err := peer.Decode(m.ID)
	if err != nil || !r.votes(p) {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrRejected, kinded(ErrConflict, fmt.Errorf(
		"%s still holds a vote in the raft configuration (its removal is not done yet) and a worker holds none: approve it as a worker once it has left; retry in a few seconds", p)))
}
