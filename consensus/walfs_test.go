package consensus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestSegmentCreateOnAFullDiskLeavesNoFile: raft-wal makes a segment file, then preallocates it;
// on a full disk the preallocation fails and its file system left the empty file behind, so
// every later attempt to make that segment, the disk freed or not, failed with "file exists"
// (a follower clearing a log suffix on a full disk never applied again: the chaos harness, seed
// 11). segmentFS removes what it could not preallocate, makes the segment once there is room,
// and replaces an empty file an earlier build left in the way; a file with data stays refused.
func TestSegmentCreateOnAFullDiskLeavesNoFile(t *testing.T) {
	dir := testdisk.Small(t, "4m")
	testdisk.Fill(t, dir)
	vfs := segmentFS{fs.New()}
	const name, size = "00000000000000002749-0000000000000001.wal", 1 << 20
	if _, err := vfs.Create(dir, name, size); err == nil {
		t.Fatal("a segment preallocated on a full disk; want the disk's refusal")
	}
	if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
		t.Fatalf("the segment raft-wal could not make is still there (%v); want it gone, or every retry fails with file exists", err)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.Create(dir, name, size)
	if err != nil {
		t.Fatalf("the same segment once the disk has room: %v", err)
	}
	_ = f.Close()

	// An empty file in the way (left by an earlier build) is replaced; one with data is not.
	const left, written = "00000000000000003000-0000000000000002.wal", "00000000000000004000-0000000000000003.wal"
	if err := os.WriteFile(filepath.Join(dir, left), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := vfs.Create(dir, left, size); err != nil {
		t.Fatalf("a segment over an empty leftover file: %v", err)
	} else {
		_ = f.Close()
	}
	if err := os.WriteFile(filepath.Join(dir, written), []byte("entries"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vfs.Create(dir, written, size); !os.IsExist(err) {
		t.Fatalf("a segment over a file with data: %v, want file exists", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, written)); err != nil || string(b) != "entries" {
		t.Fatalf("the file with data was changed: %q, %v", b, err)
	}
}
