// Package testdisk gives tests real file systems to break: a small one to fill (the full-disk
// tests of the job state's store and of a whole node mount one, fill it, and free it again) and
// an ext4 one that turns read-only as a failing disk does, or fails reads as a disk with bad
// blocks does (Ext4). It is for tests only; mounting needs root on Linux, as CI runs.
package testdisk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Small mounts a tmpfs of size (mount's syntax: "2m", "64m") on a fresh directory and
// unmounts it when the test ends. A test that cannot have one fails: a skipped test fails CI.
func Small(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount(dir, size); err != nil {
		t.Fatalf("mount a %s tmpfs (root on Linux needed): %v", size, err)
	}
	t.Cleanup(func() { unmount(dir) })
	return dir
}

// Fill writes dir/filler until its file system is full; removing the file frees the space.
func Fill(t testing.TB, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}
