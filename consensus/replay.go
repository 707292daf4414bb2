package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Serving the state on disk before a leader is known.
//
// raft alone restores only the newest snapshot when a node starts: the
// entries committed after it are applied again once a leader tells the node
// the commit index, so a node that restarts alone (its peers down, or the
// network not back yet) would serve the state as of its last snapshot, up to
// thousands of entries old, or nothing at all. But every entry its FSM
// applied before it stopped was committed, and is still in its log.
//
// So the node records the index of the last entry its FSM applied in raft's
// stable store (appliedKey, at most every appliedEvery and when it shuts
// down: a stale record only means replaying less), and at start, before raft
// runs, restores the newest snapshot itself and re-applies the log entries
// after it up to that index (replayApplied). raft is then started without
// restoring the snapshot again (NoSnapshotRestoreOnStart): it still believes
// only the snapshot applied and hands the same entries to the FSM once a
// leader is known; the FSM skips those (FSM.replayed) and refuses to
// snapshot until raft has caught up with it, so a snapshot's index always
// matches its content.

// appliedKey is the stable-store key of the last log index the FSM applied.
var appliedKey = []byte("HydraAppliedIndex")

// appliedEvery is how often a changed applied index is written (one small
// bolt transaction).
const appliedEvery = time.Second

// replayApplied restores the newest snapshot into fsm and re-applies the
// committed entries after it that this node had applied before it stopped.
// It reports whether it restored the snapshot (raft must then not restore it
// again); false with a nil error leaves the start to raft as usual (no
// snapshot that opens, or nothing recorded). It runs before raft.NewRaft.
func replayApplied(st *stores, fsm *FSM, log *slog.Logger) (restored bool, err error) {
	applied, err := st.bolt.GetUint64(appliedKey)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) || (err == nil && applied == 0) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the applied index: %w", err)
	}
	var from uint64 // the snapshot's index
	snaps, err := st.snaps.List()
	if err != nil {
		return false, fmt.Errorf("list raft snapshots: %w", err)
	}
	if len(snaps) > 0 {
		// Only the newest: raft, started without restoring, takes its index
		// as applied. A damaged one is left to raft's own fallback.
		meta, rc, err := st.snaps.Open(snaps[0].ID)
		if err != nil {
			log.Warn("replay: cannot open the newest snapshot; raft restores what it can", "snapshot", snaps[0].ID, "err", err)
			return false, nil
		}
		if err := fsm.Restore(rc); err != nil {
			log.Warn("replay: cannot restore the newest snapshot; raft restores what it can", "snapshot", meta.ID, "err", err)
			return false, nil
		}
		from = meta.Index
	}
	start := time.Now()
	var last uint64
	for i := from + 1; i <= applied; i++ {
		var l raft.Log
		if err := st.logs.GetLog(i, &l); err != nil {
			log.Warn("replay: log entry missing; the rest comes from the leader", "index", i, "err", err)
			break
		}
		switch l.Type {
		case raft.LogCommand:
			if af, ok := fsm.Apply(&l).(*ApplyFailure); ok {
				return true, af // the node stops (OnFatal); nothing more is applied
			}
			last = i
		case raft.LogConfiguration:
			fsm.StoreConfiguration(i, raft.Configuration{})
			last = i
		}
	}
	fsm.setReplayed(last)
	if last > 0 {
		log.Info("replayed the entries applied before the restart", "snapshot_index", from, "through", last, "took", time.Since(start).Round(time.Millisecond))
	}
	return true, nil
}

// recordApplied writes the FSM's applied index to the stable store at most
// every appliedEvery while it changes (woken by the first entry applied after
// a write: it sleeps while nothing is applied), and once more when the node
// closes (after raft stopped: Shutdown calls saveApplied).
func (r *Raft) recordApplied() {
	defer r.wg.Done()
	t := time.NewTimer(appliedEvery)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case <-r.appliedKick.c:
		}
		t.Reset(appliedEvery)
		select {
		case <-r.closed:
			return
		case <-t.C:
		}
		r.appliedKick.rearm()
		r.saveApplied()
	}
}

// saveApplied writes the applied index if it moved since the last write.
func (r *Raft) saveApplied() {
	r.appliedMu.Lock()
	defer r.appliedMu.Unlock()
	idx := r.fsm.index.Load()
	if idx == r.appliedSaved {
		return
	}
	if err := r.st.bolt.SetUint64(appliedKey, idx); err != nil {
		r.log.Debug("record applied index", "err", err)
		return
	}
	r.appliedSaved = idx
}
