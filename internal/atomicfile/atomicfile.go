// Package atomicfile writes files that survive a crash or a power cut whole: a reader, and the
// next start after a power cut, finds either the old file or the new one, never an empty or a
// half-written one, and a file once written stays under its name. It imports nothing of Hydra.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// The file system calls whose order makes a write durable; a test records them.
var (
	syncFile = (*os.File).Sync
	rename   = os.Rename
	link     = os.Link
	syncDir  = SyncDir
)

// Write replaces path with data (mode perm): it writes a temporary file in path's directory
// (named tempPrefix plus random characters, so that a caller can find and remove one a crash
// left), syncs it, renames it to path and syncs the directory. Without the first sync a power
// cut can leave path renamed but empty (ext4, xfs and btrfs write data and metadata apart);
// without the second it can forget the rename, so a file reported written is gone. On an
// error before the rename path is unchanged; the temporary file is removed on every error.
// Data that is streamed rather than held in memory goes through Create instead.
func Write(path string, data []byte, perm os.FileMode, tempPrefix string) error {
	f, err := Create(path, perm, tempPrefix)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// File is a file being written to replace path, for data that comes as a stream (a download,
// an image being encoded) and should not be held in memory whole: Create it, Write to it, then
// Commit it, which does what Write does with the bytes written, or Abort it. Until the commit
// path keeps its old content (or stays absent); the written bytes sit in a temporary file in
// path's directory. Defer Abort right after Create: it removes the temporary file on every
// path that does not commit, and does nothing after a Commit. A File is not safe for
// concurrent use.
type File struct {
	f    *os.File
	path string
	done bool // committed or aborted: the temporary file is closed
}

// Create starts a File that will replace path with mode perm. Its temporary file is named
// tempPrefix plus random characters, in path's directory (a rename across file systems is not
// atomic), and has mode perm from the start.
func Create(path string, perm os.FileMode, tempPrefix string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// CreateLike is Create for a file the user names (a command's -o): its mode is the one a shell's
// redirection (>) gives, that of the file it replaces, else 0666 less the umask. Create's fixed
// mode made a user's umask 077 leave a result readable by all (0644).
func CreateLike(path, tempPrefix string) (*File, error) {
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		return Create(path, st.Mode().Perm(), tempPrefix)
	}
	dir := filepath.Dir(path)
	for range 100 {
		name := filepath.Join(dir, tempPrefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666) // the umask applies
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return &File{f: f, path: path}, nil
	}
	return nil, fmt.Errorf("write %s: no free temporary name in %s", path, dir)
}

// Write writes to the temporary file; path is unchanged until Commit.
func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// Commit installs what was written under path, replacing any file there: it syncs the
// temporary file, closes it, renames it to path and syncs the directory (see Write for why
// each step). On an error the temporary file is removed and, unless the rename was done, path
// is unchanged. A File is committed or aborted once; later calls return an error.
func (f *File) Commit() error { return f.commit(rename) }

// CommitNew is Commit for a file that must not replace one another process has installed
// meanwhile (a key two starts may create at once): it links the temporary file to path, which
// fails with an error matching fs.ErrExist if path exists, and leaves that file as it is. On a
// file system without hard links (FAT, some network file systems) it renames instead, and then
// does replace a file that appeared meanwhile.
func (f *File) CommitNew() error { return f.commit(linkNew) }

// linkNew is CommitNew's install: link, or rename where the file system has no links.
func linkNew(tmp, path string) error {
	err := link(tmp, path)
	if err == nil {
		// path holds the data; a temporary name that cannot be removed is left as a
		// crash would leave it.
		_ = os.Remove(tmp)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	return rename(tmp, path)
}

func (f *File) commit(install func(tmp, path string) error) error {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	f.done = true
	tmp := f.f.Name()
	err := syncFile(f.f)
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = install(tmp, f.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", f.path, err)
	}
	return nil
}

// Abort discards what was written: it closes and removes the temporary file, leaving path as
// it was. It does nothing after Commit or an earlier Abort, so it can be deferred.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	_ = os.Remove(f.f.Name()) // closed first: Windows cannot remove an open file
}
