package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// ReadIndex is the leader's half of a read barrier (the Raft thesis, §6.4): the index a replica
// must have applied for its state to hold every write committed before the call, so that a check
// made on a follower right after a write made through another node sees that write
// (read-your-writes across nodes). Only the leader answers; elsewhere it returns ErrNotLeader.
//
// It takes the commit index, then confirms leadership with a round of heartbeats (VerifyLeader):
// a leader deposed without knowing it yet fails there instead of handing out an index that
// misses the new leader's commits. A leader that has not committed an entry of its own term yet
// (just elected) may know a commit index older than its predecessor's: it gives its last index
// then, which holds every entry committed before (raft's election restriction), at the cost of
// a wait for entries not committed yet. The wait for the replica is the caller's (WaitForIndex).
//
// The index given is that of the last entry up to there that changes state (a command or a
// configuration), not a trailing barrier or a no-op after it: a follower learns that an entry is
// committed only from a later AppendEntries (heartbeats do not carry the commit index), so it
// would learn of the commit trailer.go's barrier only at the next CommitTimeout, seconds away,
// while the barrier's own AppendEntries told it of everything before.
func (r *Raft) ReadIndex(ctx context.Context) (uint64, error) {
	if r.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	idx := r.raft.CommitIndex()
	var l raft.Log
	if err := r.st.logs.GetLog(idx, &l); err != nil || l.Term != r.raft.CurrentTerm() {
		idx = r.raft.LastIndex()
	}
	idx = r.lastStateEntry(idx)
	if err := r.await(ctx, r.raft.VerifyLeader()); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("read index: confirm leadership: %w", err)
	}
	return idx, nil
}

// readIndexWalk bounds how far lastStateEntry looks back past barriers and no-ops (one trails
// each burst of writes, one starts each term: a few in a row at most).
const readIndexWalk = 64

// lastStateEntry returns the index of the last command or configuration entry at or below idx,
// idx itself when none is found within readIndexWalk entries or the log there was compacted
// (applied everywhere that matters then).
func (r *Raft) lastStateEntry(idx uint64) uint64 {
	for i := idx; i > 0 && idx-i < readIndexWalk; i-- {
		var l raft.Log
		if err := r.st.logs.GetLog(i, &l); err != nil {
			return idx
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return idx
}
