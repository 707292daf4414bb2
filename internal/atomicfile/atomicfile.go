// Package atomicfile writes files that survive a crash or a power cut whole: a reader, and the
// next start after a power cut, finds either the old file or the new one, never an empty or a
// half-written one, and a file once written stays under its name. It imports nothing of Hydra.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// The file system calls whose order makes a write durable; a test records them.
var (
	syncFile = (*os.File).Sync
	rename   = os.Rename
	syncDir  = SyncDir
)

// Write replaces path with data (mode perm): it writes a temporary file in path's directory
// (named tempPrefix plus random characters, so that a caller can find and remove one a crash
// left), syncs it, renames it to path and syncs the directory. Without the first sync a power
// cut can leave path renamed but empty (ext4, xfs and btrfs write data and metadata apart);
// without the second it can forget the rename, so a file reported written is gone. On an
// error before the rename path is unchanged; the temporary file is removed on every error.
func Write(path string, data []byte, perm os.FileMode, tempPrefix string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename this fails harmlessly
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}
