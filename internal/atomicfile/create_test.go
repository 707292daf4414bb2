package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

// copyInto is how a caller streams into a File: Create, defer Abort, copy, Commit.
func copyInto(path string, r io.Reader) error {
	f, err := Create(path, 0o644, ".dl-")
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	return f.Commit()
}

// TestCreateCommitReplacesOnlyAtTheCommit: streamed writes go to the temporary file, the old
// content stays under path until Commit, and Commit makes the same calls in the same order as
// Write (sync the temporary file, rename it, sync the directory).
func TestCreateCommitReplacesOnlyAtTheCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "result.png")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := record(t, path, []byte("first part, second part"))
	f, err := Create(path, 0o640, ".result.png-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	for _, part := range []string{"first part, ", "second part"} {
		if _, err := io.WriteString(f, part); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Fatalf("path holds %q before the commit, want the old content", got)
		}
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(*log) != 3 || !strings.HasPrefix((*log)[0], "sync file .result.png-") ||
		(*log)[1] != "rename "+strings.TrimPrefix((*log)[0], "sync file ")+" result.png" ||
		(*log)[2] != "sync dir "+dir {
		t.Fatalf("calls %q, want: sync the temporary file, rename it to result.png, sync %s", *log, dir)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("stat %s: %v, %v; want mode 0640", path, st, err)
	}
	assertOnly(t, dir, "result.png")
	if err := f.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}
	f.Abort() // after a commit: does nothing
	assertOnly(t, dir, "result.png")
}

// TestCreateAbortAfterAWriterError: a stream that fails half-way leaves the old file as it
// was, or no file where there was none, and no temporary file.
func TestCreateAbortAfterAWriterError(t *testing.T) {
	broken := func() io.Reader {
		return io.MultiReader(strings.NewReader("half an image"), iotest.ErrReader(errors.New("connection reset")))
	}
	t.Run("old file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := copyInto(path, broken()); err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("copy = %v, want the reader's error", err)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("the file holds %q after a failed stream, want the old content", got)
		}
		assertOnly(t, dir, "f")
	})
	t.Run("no file", func(t *testing.T) {
		dir := t.TempDir()
		if err := copyInto(filepath.Join(dir, "f"), broken()); err == nil {
			t.Fatal("copy of a broken stream succeeded")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("directory holds %v after a failed stream, want nothing", ents)
		}
	})
}

// TestCommitNewKeepsAFileThatAppeared: CommitNew installs a file where there was none, and
// refuses (fs.ErrExist) to replace one that another process installed after Create, which
// stays as it is.
func TestCommitNewKeepsAFileThatAppeared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.key")
	commitNew := func(data string) error {
		f, err := Create(path, 0o600, ".identity-")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Abort()
		if _, err := io.WriteString(f, data); err != nil {
			t.Fatal(err)
		}
		if data == "second" { // another process wins the race
			if err := os.WriteFile(path, []byte("winner"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return f.CommitNew()
	}
	if err := commitNew("first"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Fatalf("the file holds %q, want first", got)
	}
	assertOnly(t, dir, "identity.key")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := commitNew("second"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CommitNew over a file that appeared = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "winner" {
		t.Errorf("the file holds %q, want the other process's", got)
	}
	assertOnly(t, dir, "identity.key")
}

// TestCommitNewWithoutHardLinksRenames: where the file system has no hard links, CommitNew
// renames the temporary file into place.
func TestCommitNewWithoutHardLinksRenames(t *testing.T) {
	realLink := link
	t.Cleanup(func() { link = realLink })
	link = func(string, string) error { return &os.LinkError{Op: "link", Err: syscall.EPERM} }
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	f, err := Create(path, 0o600, ".k-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := io.WriteString(f, "key"); err != nil {
		t.Fatal(err)
	}
	if err := f.CommitNew(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "key" {
		t.Errorf("the file holds %q, want key", got)
	}
	assertOnly(t, dir, "k")
}
