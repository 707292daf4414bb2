package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"unsafe"

	"github.com/hashicorp/raft"
)

// snapshotStore is raft's file snapshot store made to clean up after itself. raft (v1.7.3)
// leaves a snapshot it did not finish in DATA/raft/snapshots/<id>.tmp for good: its listing
// skips such directories, so it never reaps them; Cancel returns the sink's write error (a
// full disk) before it closes the state file and removes the directory; Create leaves the
// directory when it fails after making it. On a full disk that kept the partial snapshot (up to
// the size of the state) there, and open, until someone deleted it by hand.
type snapshotStore struct {
	*raft.FileSnapshotStore
	dir string // DATA/raft/snapshots
	log *slog.Logger
}

// openSnapshotStore opens the file snapshot store in dir/snapshots, first removing the
// temporary directories of snapshots a crash interrupted (the caller holds the raft.db lock,
// so no other process is writing one).
func openSnapshotStore(dir string, log *slog.Logger) (*snapshotStore, error) {
	s := &snapshotStore{dir: filepath.Join(dir, "snapshots"), log: log}
	if err := s.removeTemp(""); err != nil {
		return nil, err
	}
	fs, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained,
		newHCLogger(log.With("component", "raft-snapshots"), "snapshots"))
	if err != nil {
		return nil, err
	}
	s.FileSnapshotStore = fs
	return s, nil
}

// removeTemp removes the temporary snapshot directories whose names start with prefix.
func (s *snapshotStore) removeTemp(prefix string) error {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list raft snapshots in %s: %w", s.dir, err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".tmp") || !strings.HasPrefix(name, prefix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("remove unfinished raft snapshot: %w", err))
			continue
		}
		s.log.Info("removed an unfinished raft snapshot", "dir", filepath.Join(s.dir, name))
	}
	return errors.Join(errs...)
}

// Create is FileSnapshotStore.Create; a failed one leaves no directory, and the sink removes
// its directory when it is cancelled or fails to close.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64,
	configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		// The directory is named term-index-milliseconds: only this call makes one with this
		// term and index (raft takes one snapshot at a time, and one is never taken again).
		_ = s.removeTemp(fmt.Sprintf("%d-%d-", term, index))
		return nil, err
	}
	return &snapshotSink{SnapshotSink: sink, store: s}, nil
}

// snapshotSink removes its temporary directory if the snapshot is not completed.
type snapshotSink struct {
	raft.SnapshotSink
	store *snapshotStore
}

// Close completes the snapshot; if that fails, what was written is removed.
func (k *snapshotSink) Close() error {
	err := k.SnapshotSink.Close()
	if err != nil {
		k.discard()
	}
	return err
}

// Cancel abandons the snapshot and removes what was written, even when raft's Cancel fails
// (it does when a write failed, as on a full disk).
func (k *snapshotSink) Cancel() error {
	err := k.SnapshotSink.Cancel()
	k.discard()
	return err
}

// discard closes the sink's state file (raft leaves it open when flushing it failed: its
// blocks stay allocated while it is open, even once removed) and removes its directory.
func (k *snapshotSink) discard() {
	if fs, ok := k.SnapshotSink.(*raft.FileSnapshotSink); ok {
		if f := stateFileOf(fs); f != nil {
			_ = f.Close() // an error if raft closed it already
		}
	}
	path := filepath.Join(k.store.dir, k.ID()+".tmp")
	if err := os.RemoveAll(path); err != nil {
		k.store.log.Warn("remove an unfinished raft snapshot", "dir", path, "err", err)
	}
}

// stateFileOf is the sink's open state file (the unexported field stateFile), or nil if raft's
// FileSnapshotSink has no such field.
func stateFileOf(s *raft.FileSnapshotSink) *os.File {
	v := reflect.ValueOf(s).Elem().FieldByName("stateFile")
	if !v.IsValid() || v.Type() != reflect.TypeOf((*os.File)(nil)) {
		return nil
	}
	return *(**os.File)(unsafe.Pointer(v.UnsafeAddr()))
}
