//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// CreateLike gives the mode a shell's > gives: 0666 less the umask for a new file (a fixed 0644
// left a result readable by all under umask 077), the replaced file's own mode otherwise.
func TestCreateLikeFollowsTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	write := func(path string) os.FileMode {
		t.Helper()
		f, err := CreateLike(path, ".t-")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Abort()
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if got := write(filepath.Join(dir, "new")); got != 0o600 {
		t.Errorf("a new file under umask 077: %v, want 0600", got)
	}
	syscall.Umask(0o022)
	if got := write(filepath.Join(dir, "new2")); got != 0o644 {
		t.Errorf("a new file under umask 022: %v, want 0644", got)
	}
	kept := filepath.Join(dir, "kept")
	if err := os.WriteFile(kept, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kept, 0o640); err != nil {
		t.Fatal(err)
	}
	if got := write(kept); got != 0o640 {
		t.Errorf("a file replaced: %v, want its own 0640", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".t-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
