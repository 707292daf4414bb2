//go:build unix

package node

import (
	"errors"

	"golang.org/x/sys/unix"
)

// freeBytes is the space an unprivileged user may still write on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// diskFull reports whether err comes from a full file system (or a user's exhausted quota).
func diskFull(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
