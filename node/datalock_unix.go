//go:build unix

package node

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on f without waiting (a lock of the open file, so a
// second open of the same file in this process conflicts too, as another process's does).
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errDataLocked
	}
	return err
}
