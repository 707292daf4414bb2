//go:build !linux

package child

import "os/exec"

// setSysProcAttr: no parent-death signal here; the child exits when stdin (the pipe from the
// node) reaches its end, which happens when the node exits by any means.
func setSysProcAttr(*exec.Cmd) {}
