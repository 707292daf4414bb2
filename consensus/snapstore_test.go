//go:build linux

package consensus

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
)

// mountSmallTmpfs mounts a 1 MiB tmpfs on dir (created) for the test, or skips the test if this
// process may not mount one.
func mountSmallTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// snapshotDirEntries lists what DATA/raft/snapshots holds.
func snapshotDirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestSnapshotOnAFullDiskLeavesNoTempFiles: a snapshot that fails because the disk is full is
// cancelled (FSM Persist does that), and what it had written must go with it. raft's
// FileSnapshotSink.Cancel returns the flush error before it removes its temporary directory,
// and the store never reaps temporary directories, so the partial snapshot (up to the size of
// the state) stayed on the full disk for good.
func TestSnapshotOnAFullDiskLeavesNoTempFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	mountSmallTmpfs(t, filepath.Join(dir, "snapshots"))
	st, err := openStores(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()

	sink, err := st.snaps.Create(1, 10, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(make([]byte, 2<<20)); err == nil {
		t.Fatal("writing 2 MiB into a 1 MiB filesystem did not fail")
	}
	_ = sink.Cancel() // as fsmSnapshot.Persist does on a write error
	if names := snapshotDirEntries(t, dir); len(names) != 0 {
		t.Errorf("a cancelled snapshot left %v in the snapshot directory", names)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(dir, "snapshots"), &fs); err != nil {
		t.Fatal(err)
	}
	if free := fs.Bfree * uint64(fs.Bsize); free < 900<<10 {
		t.Errorf("after the cancel %d bytes are free of 1 MiB: the partial snapshot still holds the rest (left open)", free)
	}
}

// TestTempSnapshotsLeftByACrashAreRemoved: a snapshot being written when the node was killed
// (its directory still named *.tmp) is removed when the stores open again; raft's file
// snapshot store skips such directories, and never removes them.
func TestTempSnapshotsLeftByACrashAreRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	st, err := openStores(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := st.snaps.Create(1, 10, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// Killed here: neither Close nor Cancel runs.
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	if names := snapshotDirEntries(t, dir); len(names) != 1 {
		t.Fatalf("an unfinished snapshot: %v, want one temporary directory", names)
	}

	st, err = openStores(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if names := snapshotDirEntries(t, dir); len(names) != 0 {
		t.Errorf("after a restart the snapshot directory still holds %v", names)
	}
	if snaps, err := st.snaps.List(); err != nil || len(snaps) != 0 {
		t.Errorf("snapshots listed: %v, %v; want none", snaps, err)
	}
}
