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
	"go.etcd.io/bbolt"
)

// snapshotsRetained is how many raft snapshots are kept on disk: the newest
// and one fallback should the newest be damaged.
const snapshotsRetained = 2

// raftDBFile is the bolt file holding the raft log and stable store.
const raftDBFile = "raft.db"

// stores are raft's durable stores in DATA/raft: one bolt file for the log
// and the stable store (raft-boltdb/v2), a log cache in front of it, and a
// file snapshot store.
type stores struct {
	bolt  *raftboltdb.BoltStore
	logs  raft.LogStore
	snaps raft.SnapshotStore
}

// openStores opens (creating) the stores in dir. A second process on the
// same directory fails after a second instead of hanging on the bolt lock.
func openStores(dir string, log *slog.Logger) (*stores, error) {
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
		return nil, fmt.Errorf("open raft log %s: %w", path, err)
	}
	cache, err := raft.NewLogCache(512, bolt)
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained,
		newHCLogger(log.With("component", "raft-snapshots"), "snapshots"))
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	return &stores{bolt: bolt, logs: cache, snaps: snaps}, nil
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
	return s.bolt.Close()
}

// removeState deletes the raft state in dir (after Leave), so that the next
// start is a fresh node. Only raft's own files are removed.
func removeState(dir string) error {
	errs := []error{
		os.Remove(filepath.Join(dir, raftDBFile)),
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
