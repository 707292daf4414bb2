//go:build unix && !linux

package node

import "syscall"

// dieWithTheTest does nothing where the kernel has no parent-death signal: a test binary that
// dies there leaves its nodes running.
func dieWithTheTest(*syscall.SysProcAttr) {}
