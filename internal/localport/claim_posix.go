//go:build linux || darwin || freebsd || netbsd || openbsd

package localport

import (
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the file whose byte at offset p a process locks to claim
// port p (a POSIX record lock: the kernel drops it when the process ends,
// however it ends). It stays open for the life of the process: closing any
// descriptor of the file would drop all of the process's locks on it.
var lockFile *os.File

// claim claims port p for this process against every other process that
// uses this package, and reports whether it got it. Without the lock file
// (it cannot be created or opened) it claims nothing and says yes: the
// once-per-process rule and the check for a bound port still hold.
// Called with state's mutex held.
func claim(p int) bool {
	if lockFile == nil {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "hydra-localport.lock"), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return true
		}
		lockFile = f
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(p), Len: 1}
	err := syscall.FcntlFlock(lockFile.Fd(), syscall.F_SETLK, &lk)
	return err == nil || (err != syscall.EAGAIN && err != syscall.EACCES)
}
