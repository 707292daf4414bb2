//go:build unix

package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// giveToDirOwner hands every file and directory under dir that this process created as root to
// dir's owner, as the rest of the data directory is. `sudo hydra recover --data /var/lib/hydra`
// (the systemd unit's node runs as its own DynamicUser=, so root is who can reach its state)
// otherwise left the rewritten raft log and the new snapshot owned by root, mode 0644/0755 in a
// 0700 directory: the node then stopped at start on "permission denied" (exit code 1, restarted
// every few seconds for ever), with advice to move its raft state aside. Nothing happens unless
// this process is root and dir belongs to someone else. dir may be a symbolic link (systemd's
// /var/lib/hydra points into /var/lib/private). Links are not followed, and a file of several
// hard links is left as it is.
func giveToDirOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	var errs []error
	walkErr := filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		// A regular file of more than one link is not one recover wrote (it writes new files, each
		// under one name): the directory's owner could have linked root's own files in (where
		// fs.protected_hardlinks is off), and root would give them away.
		if s, ok := info.Sys().(*syscall.Stat_t); ok && s.Uid == 0 && (d.IsDir() || s.Nlink == 1) {
			if err := os.Lchown(p, uid, gid); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if err := errors.Join(append(errs, walkErr)...); err != nil {
		return fmt.Errorf("give %s back to its owner (uid %d): %w", dir, uid, err)
	}
	return nil
}
