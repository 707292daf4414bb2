package child

import (
	"os"
	"syscall"
	"testing"
)

func findProcess(pid int) (*os.Process, error) { return os.FindProcess(pid) }

func testExe(t *testing.T) string { t.Helper(); return os.Args[0] }

// syscallGone reports whether process pid no longer exists (signal 0 fails; on Windows, where
// only Kill is a signal, whether it cannot be found).
func syscallGone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	return p.Signal(syscall.Signal(0)) != nil
}
