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
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hydra-compute/hydra/internal/atomicfile"
	"github.com/hydra-compute/hydra/internal/boltfile"
	"go.etcd.io/bbolt"
)

// snapshotsRetained is how many raft snapshots are kept on disk: the newest
// and one fallback should the newest be damaged.
const snapshotsRetained = 2

// raftDBFile is the bolt file holding raft's stable store (term, vote, the
// applied index). Before the write-ahead log it held the log too.
const raftDBFile = "raft.db"

// walDir holds the raft log (hashicorp/raft-wal: append-only segment files).
// walMigrating is where a log still in raft.db is copied before it becomes walDir.
const (
	walDir       = "wal"
	walMigrating = "wal.migrating"
)

// walSegmentSize is the size of a log segment file (preallocated; an entry
// of up to wire.MaxLogEntry that does not fit makes it longer and ends it).
const walSegmentSize = 16 << 20

// stores are raft's durable stores in DATA/raft: the log in a write-ahead log
// (raft-wal: one fsync per append, where bbolt's copy-on-write B+tree took two
// fdatasyncs and several page writes), a log cache in front of it, the stable
// store in a bolt file (raft-boltdb/v2: rarely written; its lock also keeps a
// second process off the directory), and a file snapshot store. Writes to the
// log and the stable store are watched for a failing disk (diskfail.go).
type stores struct {
	dir   string                // DATA/raft
	bolt  *raftboltdb.BoltStore // the stable store
	wal   *walStore
	logs  raft.LogStore
	snaps raft.SnapshotStore
	mark  *appliedMark // the applied index as of the last entry applied (appliedmark.go)
	watch *failWatch   // a failing disk under the log or the stable store (diskfail.go)
}

// openStores opens (creating) the stores in dir. A second process on the
// same directory fails after a second instead of hanging on the bolt lock.
// A log kept in raft.db by an older version is moved to the write-ahead log
// first (migrateLog).
func openStores(dir string, log *slog.Logger) (*stores, error) {
	return openStoresSized(dir, log, walSegmentSize)
}

// openStoresSized is openStores with a log segment size of segSize bytes
// (tests: a log that drops its oldest segments after a few hundred entries,
// so that a leader sends a lagging follower its snapshot).
func openStoresSized(dir string, log *slog.Logger, segSize int) (*stores, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	path := filepath.Join(dir, raftDBFile)
	var bolt *raftboltdb.BoltStore
	err := boltfile.Guard(path, damagedRaftRemedy(dir), func() error {
		var err error
		bolt, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
		return err
	})
	if err != nil {
		var de *boltfile.DamagedError
		if errors.As(err, &de) {
			return nil, err // it names the file and says what to do
		}
		return nil, fmt.Errorf("open raft stable store %s: %w", path, err)
	}
	st := &stores{dir: dir, bolt: bolt, watch: &failWatch{dir: dir}}
	if err := migrateLog(dir, bolt, log); err != nil {
		_ = bolt.Close()
		return nil, err
	}
	if st.wal, err = openWALSized(filepath.Join(dir, walDir), segSize, log); err != nil {
		_ = bolt.Close()
		return nil, err
	}
	if st.logs, err = raft.NewLogCache(512, watchedLogs{st.wal, st.watch}); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	st.snaps, err = openSnapshotStore(dir, log)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	if err := st.checkLogReachesApplied(dir); err != nil {
		_ = st.close()
		return nil, err
	}
	if st.mark, err = openAppliedMark(dir, log); err != nil {
		_ = st.close()
		return nil, err
	}
	return st, nil
}

// checkLogReachesApplied fails if the log ends before the last entry this node recorded as
// applied (appliedKey), with no snapshot that covers it: acknowledged entries are gone. raft-wal
// takes a tail segment it cannot read (overwritten, or deleted) for one torn by a crash and
// starts it again empty, so a damaged log would otherwise open as a shorter one and the node
// would vote and acknowledge as if it had never held those entries.
func (s *stores) checkLogReachesApplied(dir string) error {
	applied, err := s.bolt.GetUint64(appliedKey)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the applied index: %w", err)
	}
	last, err := s.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("raft log %s: %w", filepath.Join(dir, walDir), err)
	}
	if last >= applied {
		return nil
	}
	snaps, err := s.snaps.List()
	if err != nil {
		return fmt.Errorf("list raft snapshots: %w", err)
	}
	if len(snaps) > 0 && snaps[0].Index >= applied {
		return nil // installed from the leader: the log before it is gone, as it should be
	}
	return fmt.Errorf("raft log %s is damaged: it ends at entry %d, but this node had applied up to %d: %s",
		filepath.Join(dir, walDir), last, applied, damagedRaftRemedy(dir))
}

// openWAL opens (creating) the write-ahead log in dir. A damaged one (its
// metadata file bbolt refuses, or a segment it cannot read) is an error that
// says what to do. A torn append at the end (a crash while writing) is not
// damage: raft-wal drops it, as it was never acknowledged.
func openWAL(dir string, log *slog.Logger) (*walStore, error) {
	return openWALSized(dir, walSegmentSize, log)
}

// openWALSized is openWAL with segments of segSize bytes.
func openWALSized(dir string, segSize int, log *slog.Logger) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log dir: %w", err)
	}
	w := &walStore{meta: &metadb.BoltMetaDB{}}
	err := boltfile.Guard(dir, damagedRaftRemedy(filepath.Dir(dir)), func() error {
		var err error
		w.WAL, err = wal.Open(dir, wal.WithSegmentSize(segSize), wal.WithMetaStore(w.meta),
			wal.WithSegmentFiler(segment.NewFiler(dir, segmentFS{fs.New()})), // a full disk's leftovers removed
			wal.WithLogger(newHCLogger(log.With("component", "raft-wal"), "wal")))
		return err
	})
	if err != nil {
		_ = w.meta.Close()
	}
	if err != nil {
		var de *boltfile.DamagedError
		if errors.As(err, &de) {
			return nil, err // it names the file and says what to do
		}
		return nil, fmt.Errorf("open raft log %s: %w (if it is damaged: %s)", dir, err, damagedRaftRemedy(filepath.Dir(dir)))
	}
	if err := checkSealedSegments(dir, w.meta); err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

// checkSealedSegments fails if a sealed segment of the log in dir has no index block: raft-wal
// before v0.4.1 sealed the tail that way when it cleared a log suffix (a follower whose
// uncommitted entries a new leader overrode), and every read of that segment then fails, so
// raft.NewRaft panicked at the next start. A log written so by an older hydra is damaged:
// an error that says what to do, not a crash at every start.
func checkSealedSegments(dir string, meta *metadb.BoltMetaDB) error {
	state, err := meta.Load(dir)
	if err != nil {
		return fmt.Errorf("read the raft log's metadata in %s: %w", dir, err)
	}
	for _, seg := range state.Segments {
		if !seg.SealTime.IsZero() && seg.IndexStart == 0 {
			return fmt.Errorf("raft log %s is damaged: its segment of entries %d to %d was sealed without an index "+
				"(an older hydra, after it cleared a log suffix), so they cannot be read: %s",
				dir, seg.MinIndex, seg.MaxIndex, damagedRaftRemedy(filepath.Dir(dir)))
		}
	}
	return nil
}

// walStore is the write-ahead log with its metadata file, which WAL.Close
// leaves open (raft-wal v0.4.1): Close closes both, so that the directory can
// be opened again in the same process (a restart in tests, recovery).
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// Close closes the log, then its metadata file.
func (w *walStore) Close() error {
	return errors.Join(w.WAL.Close(), w.meta.Close())
}

// migrateLog moves a raft log kept in raft.db (before the write-ahead log) to
// the write-ahead log: copied to walMigrating, which then becomes walDir in
// one rename, and only then deleted from raft.db. A crash at any point leaves
// either the old log (the copy is made again) or the new one (what is left in
// raft.db is deleted).
func migrateLog(dir string, bolt *raftboltdb.BoltStore, log *slog.Logger) error {
	first, err := bolt.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft log in %s: %w", raftDBFile, err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return fmt.Errorf("raft log in %s: %w", raftDBFile, err)
	}
	if last == 0 {
		return nil // nothing there (a new node, or migrated)
	}
	if _, err := os.Stat(filepath.Join(dir, walDir)); err == nil {
		// The copy was complete: only the deletion was left. Unless the write-ahead log does not
		// hold what raft.db does (an older version ran on this directory after the move and
		// wrote its log to raft.db): then neither may go.
		if err := walHolds(filepath.Join(dir, walDir), first, last, log); err != nil {
			return fmt.Errorf("%s and %s both hold a raft log: %w; was an older version of hydra run on %s? %s",
				raftDBFile, walDir, err, dir, damagedRaftRemedy(dir))
		}
		if err := bolt.DeleteRange(first, last); err != nil {
			return fmt.Errorf("delete the migrated raft log from %s: %w", raftDBFile, err)
		}
		return nil
	}
	tmp := filepath.Join(dir, walMigrating)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove an unfinished raft log migration: %w", err)
	}
	w, err := openWAL(tmp, log)
	if err != nil {
		return fmt.Errorf("raft log migration: %w", err)
	}
	start := time.Now()
	err = copyLog(bolt, w, first, last)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, walDir))
	}
	if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("move the raft log from %s to %s: %w", raftDBFile, walDir, err)
	}
	if err := bolt.DeleteRange(first, last); err != nil {
		return fmt.Errorf("delete the migrated raft log from %s: %w", raftDBFile, err)
	}
	log.Info("moved the raft log to a write-ahead log", "entries", last-first+1, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// walHolds checks that the write-ahead log in dir holds the entries first..last.
func walHolds(dir string, first, last uint64, log *slog.Logger) error {
	w, err := openWAL(dir, log)
	if err != nil {
		return err
	}
	defer w.Close()
	wf, err := w.FirstIndex()
	if err != nil {
		return err
	}
	wl, err := w.LastIndex()
	if err != nil {
		return err
	}
	if wl == 0 || wf > first || wl < last {
		return fmt.Errorf("entries %d-%d in %s, %d-%d in %s", first, last, raftDBFile, wf, wl, walDir)
	}
	return nil
}

// copyLog copies the entries first..last of from to to, in appends of up to 256.
func copyLog(from raft.LogStore, to raft.LogStore, first, last uint64) error {
	batch := make([]*raft.Log, 0, 256)
	for i := first; i <= last; i++ {
		l := new(raft.Log)
		if err := from.GetLog(i, l); err != nil {
			return fmt.Errorf("read entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == cap(batch) || i == last {
			if err := to.StoreLogs(batch); err != nil {
				return fmt.Errorf("write entries %d-%d: %w", batch[0].Index, i, err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// damagedRaftRemedy is what a user does about a damaged raft.db in dir.
func damagedRaftRemedy(dir string) string {
	return fmt.Sprintf("stop the node, move the raft state aside (mv %s %s.damaged) and start the node again: "+
		"it then gets the cluster's state from the leader like a new member (its results and identity stay); "+
		"a cluster of this node alone has no other copy, so restore %s from a backup instead", dir, dir, dir)
}

// hasState reports whether the stores hold any raft state (a term, a log
// entry or a snapshot): such a node never bootstraps, it just runs.
func (s *stores) hasState() (bool, error) {
	return raft.HasExistingState(s.logs, s.bolt, s.snaps)
}

func (s *stores) close() error {
	if s == nil || s.bolt == nil {
		return nil
	}
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	errs = append(errs, s.mark.close(), s.bolt.Close())
	return errors.Join(errs...)
}

// removeState deletes the raft state in dir (after Leave), so that the next
// start is a fresh node. Only raft's own files are removed.
func removeState(dir string) error {
	errs := []error{
		os.Remove(filepath.Join(dir, raftDBFile)),
		os.Remove(filepath.Join(dir, appliedMarkFile)),
		os.RemoveAll(filepath.Join(dir, walDir)),
		os.RemoveAll(filepath.Join(dir, walMigrating)),
		os.RemoveAll(filepath.Join(dir, "snapshots")),
	}
	var out []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}
