package consensus

import (
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// segmentFS is raft-wal's file system (fs.FS) with one repair, for a disk that fills up.
// raft-wal makes a segment file exclusively (O_EXCL) and then preallocates it; when the
// preallocation fails (ENOSPC) it leaves the empty file behind, and every later attempt to make
// that segment fails with "file exists" (the name comes from its metadata, so it is the same
// name each time). A follower clearing a log suffix on a full disk (a new leader overrode its
// entries) then never applied again, even once the disk had room: a voter stuck for good, found
// by the chaos harness. Here a segment whose creation failed is removed, and an empty file
// already in the way (left by an earlier build, or a crash between the two steps) is replaced:
// a segment raft-wal wrote to is never empty, as it is preallocated before any write.
type segmentFS struct{ *fs.FS }

// Create makes the segment file name in dir, preallocated to size (types.VFS).
func (s segmentFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := s.FS.Create(dir, name, size)
	if err == nil {
		return f, nil
	}
	path := filepath.Join(dir, name)
	if !errors.Is(err, iofs.ErrExist) {
		// O_EXCL refused any file already there (ErrExist), so a file of that name now is
		// the one this call made and could not preallocate.
		_ = os.Remove(path)
		return nil, err
	}
	if fi, serr := os.Lstat(path); serr != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		return nil, err
	}
	if rerr := os.Remove(path); rerr != nil {
		return nil, err
	}
	return s.FS.Create(dir, name, size)
}
