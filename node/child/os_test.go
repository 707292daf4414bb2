package child

import (
	"os"
	"testing"
)

func findProcess(pid int) (*os.Process, error) { return os.FindProcess(pid) }

func testExe(t *testing.T) string { t.Helper(); return os.Args[0] }
