// Package testdisk gives tests real file systems to break: a small one to fill (the full-disk
// tests of the job state's store and of a whole node mount one, fill it, and free it again) and
// an ext4 one that turns read-only as a failing disk does, or fails reads as a disk with bad
// blocks does (Ext4). It is for tests only; mounting needs root on Linux, as CI runs.
package testdisk

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
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

// SmallInodes is Small with at most inodes files and directories: a file system that is full
// while it has bytes free (FillInodes), as many small files leave one.
func SmallInodes(t testing.TB, size string, inodes int) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount(dir, size+",nr_inodes="+strconv.Itoa(inodes)); err != nil {
		t.Fatalf("mount a %s tmpfs of %d inodes (root on Linux needed): %v", size, inodes, err)
	}
	t.Cleanup(func() { unmount(dir) })
	return dir
}

// FillInodes creates empty files under dir/inode-filler until its file system has no inode
// left; removing that directory frees them.
func FillInodes(t testing.TB, dir string) {
	t.Helper()
	sub := filepath.Join(dir, "inode-filler")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(sub, strconv.Itoa(i)))
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
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
