//go:build !linux

package testdisk

import (
	"errors"
	"testing"
)

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

// Ext4At fails the test, as Ext4 does.
func Ext4At(t testing.TB, img, dir, size string) *Failing { return Ext4(t, size) }

var errLinuxOnly = errors.New("a failing ext4 file system needs Linux")

// Break fails off Linux.
func (f *Failing) Break() error { return errLinuxOnly }

// Fail does nothing off Linux.
func (f *Failing) Fail(t testing.TB) {}

// Replace fails off Linux.
func (f *Failing) Replace() error { return errLinuxOnly }

// FailReads fails off Linux.
func (f *Failing) FailReads(pattern string, from int64) error { return errLinuxOnly }
