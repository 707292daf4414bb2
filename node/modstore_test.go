package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hydra-compute/hydra/compute/wasm"
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
