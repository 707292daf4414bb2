//go:build !linux

package childproc

import "os/exec"

// dieWithParent sets nothing: only Linux has a parent-death signal.
func dieWithParent(*exec.Cmd) {}
