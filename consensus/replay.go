package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hydra-compute/hydra/internal/boltfile"
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
// down: a stale record only means replaying less), and, without an fsync,
// after every entry in the applied mark (appliedmark.go), which survives the
// process being killed; at start, before raft
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

// replayApplied restores the newest usable snapshot into fsm (restoreUsable)
// and re-applies the committed entries after it that this node had applied
// before it stopped. It reports whether it restored a snapshot (raft must
// then not restore one again); false with a nil error means there is none
// (raft then starts from the log alone). It runs before raft.NewRaft.
func replayApplied(st *stores, fsm *FSM, log *slog.Logger) (restored bool, err error) {
	applied, err := st.bolt.GetUint64(appliedKey)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return false, fmt.Errorf("read the applied index: %w", err)
	}
	applied = max(applied, st.mark.last) // the mark is newer unless the machine stopped
	snaps, err := st.snaps.List()
	if err != nil {
		return false, fmt.Errorf("list raft snapshots: %w", err)
	}
	if applied == 0 && len(snaps) == 0 {
		return false, nil
	}
	// The newest snapshot that restores; raft, started without restoring, takes its index as
	// applied (restoreUsable moves damaged newer ones out of its way).
	from, usable, err := restoreUsable(st, snaps, fsm, log)
	if err != nil {
		return false, err
	}
	if usable {
		fsm.restoredThrough(from)
	}
	start := time.Now()
	var last uint64
	for i := from + 1; i <= applied; i++ {
		var l raft.Log
		if err := st.logs.GetLog(i, &l); unreadable(err) {
			return false, st.watch.readFailure(i, err) // a failing disk: NewRaft's scan would panic on it
		} else if err != nil {
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
	return usable, nil
}

// restoreUsable restores into fsm the newest of snaps (newest first) that opens (its checksum
// holds) and restores, and returns its index (0 if there are none). A damaged newer one is
// moved out of raft's snapshot directory, to DATA/raft/<id>.damaged: raft's own fallback to an
// older snapshot would otherwise take it (hashicorp/raft v1.7.3), and then, when the log no
// longer reaches back to the older snapshot (it is trimmed after each snapshot), panic with
// "log not found" at every start. With no usable snapshot the log must start at its first entry
// (a young cluster's log holds everything) and no failed restore may have touched fsm; usable
// then reports false, and the log is replayed from the start. When no snapshot and the log
// together hold every entry this node applied, the result is a *boltfile.DamagedError that says
// what to do (the node exits with it, unrestarted).
func restoreUsable(st *stores, snaps []*raft.SnapshotMeta, fsm *FSM, log *slog.Logger) (index uint64, usable bool, err error) {
	var damaged []string // the IDs of newer snapshots that did not restore, and why
	var causes []error
	touched := false // a restore that failed after it began to change fsm
	for _, meta := range snaps {
		began, err := restoreOne(st, meta.ID, fsm)
		if err == nil {
			index, usable = meta.Index, true
			break
		}
		if diskIsFull(err) {
			// This node's disk cannot take the snapshot's state (the job state's results), which
			// is no damage of the snapshot: set aside, the good snapshot would be lost (and, with
			// no older one to restore, the node told to drop its raft state). The start fails with
			// the disk's error; the node waits for space and starts again (node/diskspace.go).
			return 0, false, fmt.Errorf("restore raft snapshot %s: %w", meta.ID, err)
		}
		touched = touched || began
		log.Error("a raft snapshot is damaged; trying an older one", "snapshot", meta.ID, "err", err)
		damaged = append(damaged, meta.ID)
		causes = append(causes, fmt.Errorf("snapshot %s: %w", meta.ID, err))
	}
	first, err := st.logs.FirstIndex()
	if err != nil {
		return 0, false, fmt.Errorf("read the raft log's first index: %w", err)
	}
	// The log continues a snapshot only if it starts right after it (or holds nothing): compaction
	// never trims past the newest snapshot, so a gap means snapshots are missing or damaged.
	// Without a usable snapshot the log alone must hold everything, from entry 1.
	if first > index+1 || (len(snaps) > 0 && !usable && (first == 0 || touched)) {
		cause := fmt.Sprintf("no raft snapshot restores and the log starts at entry %d", first)
		if usable {
			cause = fmt.Sprintf("the newest snapshot that restores ends at entry %d, but the log starts at entry %d", index, first)
		}
		if len(causes) > 0 {
			cause += ": " + errors.Join(causes...).Error()
		}
		return 0, false, &boltfile.DamagedError{Path: st.dir, Cause: cause, Remedy: damagedRaftRemedy(st.dir)}
	}
	for _, id := range damaged {
		from := filepath.Join(st.dir, "snapshots", id)
		to := filepath.Join(st.dir, id+".damaged")
		if err := os.Rename(from, to); err != nil {
			return 0, false, fmt.Errorf("move the damaged raft snapshot %s aside: %w", from, err)
		}
		log.Warn("moved a damaged raft snapshot aside; the node restored an older one (restored_index 0: none) and replays the log after it",
			"damaged", to, "restored_index", index)
	}
	return index, usable, nil
}

// restoreOne opens a snapshot (raft's file store checks its checksum) and restores it into fsm;
// began reports whether the restore got as far as fsm (which a failure may then have changed).
func restoreOne(st *stores, id string, fsm *FSM) (began bool, err error) {
	_, rc, err := st.snaps.Open(id)
	if err != nil {
		return false, err
	}
	return true, fsm.Restore(rc)
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
