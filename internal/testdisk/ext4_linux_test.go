package testdisk

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestReplaceWaitsForTheLastHolder: a process still holding the failed disk (a node's compute
// child, killed by its parent's death, a moment after the node) made Replace's unmount fall back
// to a lazy one, and mkfs then refused the device as in use (the chaos harness, seed 107's rerun:
// "fail of n1: mkfs.ext4 /dev/loop1 ... is apparently in use by the system"). Replace now waits
// for the holder to let go.
func TestReplaceWaitsForTheLastHolder(t *testing.T) {
	d := Ext4(t, "16M")
	d.Fail(t)
	held, err := os.Open(filepath.Join(d.Dir, "lost+found"))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	busyHook = func() { once.Do(func() { held.Close() }) } // the holder dies once Replace has met it
	t.Cleanup(func() { busyHook = nil; held.Close() })
	if err := d.Replace(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "after"), []byte("new disk"), 0o600); err != nil {
		t.Fatalf("the new disk takes no writes: %v", err)
	}
}
