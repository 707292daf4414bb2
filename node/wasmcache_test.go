package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hydra-compute/hydra/compute/wasm"
)

// cacheEntries counts the compiled-code entries in a node's wasm cache.
func cacheEntries(t *testing.T, n *testNode) int {
	t.Helper()
	count := 0
	err := filepath.WalkDir(n.wasmCacheDir(), func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isCacheEntry(d.Name()) {
			count++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

// TestDeletedModulesLeaveNoMachineCode: a node that has uploaded and deleted many modules keeps
// none of their machine code in DATA/wasm-cache. Before, each module's entry (megabytes for a
// module built by Go: 14 MB for the primes and collatz examples) stayed for good, so the cache
// grew with every module ever uploaded. A module still stored validates and compiles again.
func TestDeletedModulesLeaveNoMachineCode(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	ctx := context.Background()
	upload := func(file string) string {
		t.Helper()
		code, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.checkModule(ctx, code); err != nil {
			t.Fatal(err)
		}
		sha := wasm.Hash(code)
		if err := n.storeModule(sha, code); err != nil {
			t.Fatal(err)
		}
		return sha
	}
	kept := upload("../compute/wasm/testdata/sum.wasm")
	for _, f := range []string{"emit.wasm", "grow.wasm", "loop.wasm", "trap.wasm"} {
		sha := upload("../compute/wasm/testdata/" + f)
		if cacheEntries(t, n) == 0 {
			t.Fatalf("no cache entry after %s was validated", f)
		}
		// This node's own delete (DeleteModule adds the read barrier and the other members,
		// and this node is in no cluster).
		if err := n.deleteLocalModule(sha); err != nil {
			t.Fatalf("delete %s: %v", f, err)
		}
		if got := cacheEntries(t, n); got != 0 {
			t.Fatalf("after deleting %s the wasm cache still holds %d entries", f, got)
		}
	}
	if !n.moduleIntact(kept) {
		t.Fatal("the module still stored is gone")
	}
	code, err := os.ReadFile(filepath.Join(n.modulesDir(), kept))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.checkModule(ctx, code); err != nil {
		t.Fatalf("the module still stored no longer compiles: %v", err)
	}
	if cacheEntries(t, n) != 1 {
		t.Fatalf("the stored module was not compiled into the cache again: %d entries", cacheEntries(t, n))
	}
}

// TestWasmCacheTempsLeftByACrashAreRemoved: a compute child or node killed while wazero wrote a
// cache entry leaves its temporary file (the entry's size: megabytes) in DATA/wasm-cache; the
// next start removes it, and leaves entries and files that are not wazero's alone.
func TestWasmCacheTempsLeftByACrashAreRemoved(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "wasm-cache", Version, "wazero-1.12.0-amd64-linux")
	entry := filepath.Join(cache, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	temp := entry + ".123456.tmp"
	user := filepath.Join(dir, "wasm-cache", Version, "notes", "x.tmp")
	for _, f := range []string{entry, temp, user} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, make([]byte, 1<<10), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newTestNode(t, dir, "n0", func(c *Config) { c.Compute = false })
	if _, err := os.Stat(temp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the half-written cache entry is still there after a restart: %v", err)
	}
	for _, f := range []string{entry, user} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s was removed: %v", f, err)
		}
	}
}

// TestValidatorStartsAgainOnceItCan: a validator that could not start (its cache directory could
// not be made: a full disk; here a file in its way) starts on the next module once it can. Before,
// its first error stayed for the node's life: every upload and every fetch of a module refused
// with it, long after the disk had room again, until the node restarted.
func TestValidatorStartsAgainOnceItCan(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	dir := n.wasmCacheDir()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // no directory can be made there
		t.Fatal(err)
	}
	if err := n.checkModule(context.Background(), code); err == nil {
		t.Fatal("validated with no cache directory to compile into")
	}
	if err := os.Remove(dir); err != nil { // room again
		t.Fatal(err)
	}
	if err := n.checkModule(context.Background(), code); err != nil {
		t.Fatalf("the validator did not start again once it could: %v", err)
	}
	if cacheEntries(t, n) == 0 {
		t.Fatal("nothing compiled into the cache")
	}
}
