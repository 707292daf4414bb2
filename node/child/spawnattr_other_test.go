//go:build !linux

package child

import "os/exec"

// setSysProcAttr: no parent-death signal here; the benchmarks' processes end when their stdin
// reaches its end.
func setSysProcAttr(*exec.Cmd) {}
