//go:build !linux

package testdisk

import "testing"

// Failing is a file system a test can make fail (Linux only).
type Failing struct {
	// Dir is the mounted file system's root.
	Dir string
}

// Ext4 fails the test: loop devices and ext4 are Linux only.
func Ext4(t testing.TB, size string) *Failing {
	t.Helper()
	t.Fatal("a failing ext4 file system needs Linux")
	return nil
}

// Fail does nothing off Linux.
func (f *Failing) Fail(t testing.TB) {}
