package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// record replaces the file system calls of Write with ones that run the real call and log it,
// with what a power cut at that moment would leave on disk.
func record(t *testing.T, path string, data []byte) *[]string {
	t.Helper()
	var log []string
	realSyncFile, realRename, realSyncDir := syncFile, rename, syncDir
	t.Cleanup(func() { syncFile, rename, syncDir = realSyncFile, realRename, realSyncDir })
	syncFile = func(f *os.File) error {
		got, err := os.ReadFile(f.Name())
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("the temporary file is synced before it holds the data: %v", err)
		}
		log = append(log, "sync file "+filepath.Base(f.Name()))
		return realSyncFile(f)
	}
	rename = func(from, to string) error {
		log = append(log, "rename "+filepath.Base(from)+" "+filepath.Base(to))
		return realRename(from, to)
	}
	syncDir = func(dir string) error {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
			t.Errorf("the directory is synced before the file is in place: %v", err)
		}
		log = append(log, "sync dir "+dir)
		return realSyncDir(dir)
	}
	return &log
}

// TestWriteSyncsTheFileBeforeTheRenameAndTheDirectoryAfter: the order that makes a replaced
// file survive a power cut. A power cut itself cannot be simulated in a test; this checks the
// calls the kernel sees and their order. Before, node's api-token and api-url files were
// renamed unsynced (a power cut could leave an empty token), and no directory was synced
// after a module was stored (a power cut could lose a module reported stored).
func TestWriteSyncsTheFileBeforeTheRenameAndTheDirectoryAfter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api-token")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := []byte("new token\n")
	log := record(t, path, data)
	if err := Write(path, data, 0o640, ".api-token-"); err != nil {
		t.Fatal(err)
	}
	if len(*log) != 3 || !strings.HasPrefix((*log)[0], "sync file .api-token-") ||
		(*log)[1] != "rename "+strings.TrimPrefix((*log)[0], "sync file ")+" api-token" ||
		(*log)[2] != "sync dir "+dir {
		t.Fatalf("calls %q, want: sync the temporary file, rename it to api-token, sync %s", *log, dir)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	assertOnly(t, dir, "api-token")
}

// TestWriteThatFailsLeavesTheOldFile: a failed sync (the disk reports an I/O error) leaves the
// old file and no temporary one, whether the data came whole (Write) or streamed (Create,
// Commit); the error names the file.
func TestWriteThatFailsLeavesTheOldFile(t *testing.T) {
	realSyncFile := syncFile
	t.Cleanup(func() { syncFile = realSyncFile })
	syncFile = func(*os.File) error { return errors.New("input/output error") }
	for name, write := range map[string]func(path string) error{
		"Write":  func(path string) error { return Write(path, []byte("new"), 0o600, ".f-") },
		"Create": func(path string) error { return copyInto(path, strings.NewReader("new")) },
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := write(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s = %v, want an error naming %s", name, err, path)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("%s: the file holds %q after a failed write, want the old content", name, got)
		}
		assertOnly(t, dir, "f")
	}
}

func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s", names, name)
	}
}
