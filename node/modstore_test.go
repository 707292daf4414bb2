package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/webui"
)

// TestUploadTempFilesLeftByACrashAreRemoved: an upload being written when the node was killed
// leaves DATA/modules/.upload-* (up to --max-module-bytes each); the next start removes it.
// Before, nothing ever did, and each such crash kept its file for good.
func TestUploadTempFilesLeftByACrashAreRemoved(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "modules", ".upload-123456")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the half-written upload is still there after a restart: %v", err)
	}
}

// TestOlderVersionsWasmCachesAreRemoved: DATA/wasm-cache/<version> of an older Hydra (each
// upgrade starts a fresh one) is removed at start; the current version's cache and whatever
// does not look like a wazero cache (a user's file or directory, a symbolic link) stay. Before,
// nothing removed old caches, so each upgrade kept a copy of every module's machine code.
func TestOlderVersionsWasmCachesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "wasm-cache")
	mk := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(root, "0.0.9")
	mk(filepath.Join(old, "wazero-1.11.0-amd64-linux", "0123abcd"))
	emptyOld := filepath.Join(root, "0.0.8")
	if err := os.MkdirAll(emptyOld, 0o700); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(root, Version)
	mk(filepath.Join(current, "wazero-1.12.0-amd64-linux", "0123abcd"))
	userDir := filepath.Join(root, "notes")
	mk(filepath.Join(userDir, "todo.txt"))
	mixed := filepath.Join(root, "0.0.7") // a wazero cache plus a file of someone else's
	mk(filepath.Join(mixed, "wazero-1.10.0-amd64-linux", "0123abcd"))
	mk(filepath.Join(mixed, "keep.txt"))
	userFile := filepath.Join(root, "README")
	mk(userFile)
	outside := filepath.Join(dir, "elsewhere")
	mk(filepath.Join(outside, "wazero-1.11.0-amd64-linux", "0123abcd"))
	link := filepath.Join(root, "0.0.6")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}

	newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })

	for _, gone := range []string{old, emptyOld} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the older version's cache %s is still there: %v", gone, err)
		}
	}
	for _, kept := range []string{
		filepath.Join(current, "wazero-1.12.0-amd64-linux", "0123abcd"),
		filepath.Join(userDir, "todo.txt"), filepath.Join(mixed, "keep.txt"),
		filepath.Join(mixed, "wazero-1.10.0-amd64-linux", "0123abcd"), userFile, link,
		filepath.Join(outside, "wazero-1.11.0-amd64-linux", "0123abcd"),
	} {
		if _, err := os.Lstat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
}

// TestCorruptModuleIsNotTakenAsHeld: a module stored by an earlier run whose bytes no longer
// hash to its name (a damaged disk, found at start) is not a module this node holds:
// ensureModule fetches it again (here, with no other member, it fails). Before, the file's
// existence was enough, so every chunk of the module failed its hash check on this node, and
// the module was never fetched again.
func TestCorruptModuleIsNotTakenAsHeld(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	sha := wasm.Hash(code)
	bad := append([]byte(nil), code...)
	bad[len(bad)/2] ^= 0x40
	if err := os.MkdirAll(n.modulesDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.modulesDir(), sha), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ensureModule(context.Background(), sha, ""); err == nil {
		t.Fatal("ensureModule took a corrupt copy for the module")
	}
	if err := n.storeModule(sha, code); err != nil { // an upload repairs it
		t.Fatal(err)
	}
	if err := n.ensureModule(context.Background(), sha, ""); err != nil {
		t.Fatalf("the repaired module: %v", err)
	}
}

// TestRecoverScratchLeftByACrashIsRemoved: a hydra recover killed while it replayed the log left
// its scratch result store DATA/jobs.recover.db (as big as the cluster's results); the next node
// start removes it. Before, only another hydra recover did.
func TestRecoverScratchLeftByACrashIsRemoved(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, recoverScratch)
	if err := os.WriteFile(left, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after the node started: %v", recoverScratch, err)
	}
}

// TestModulesCompileOneAtATime: a node compiles one module at a time (compiling takes about 5
// bytes of memory per byte of code, what the module cap is sized for): an upload that finds
// another compiling waits its turn, and one whose deadline passes meanwhile answers "try again"
// (webui.ErrUnavailable, 503) without compiling.
func TestModulesCompileOneAtATime(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.checkModule(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	n.wasmVal.turn <- struct{}{} // another module compiling
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.checkModule(ctx, code); !errors.Is(err, webui.ErrUnavailable) {
		t.Fatalf("an upload while another module compiles, past its deadline: %v, want ErrUnavailable", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.checkModule(context.Background(), code) }()
	select {
	case err := <-done:
		t.Fatalf("compiled while another module was compiling: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	<-n.wasmVal.turn
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
