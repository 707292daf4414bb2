package child

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel SIGKILL a process the benchmarks start (a busy stand-in for
// the owner's programs, a lostwork run) when the test binary dies, even by SIGKILL. spawn
// starts the compute child through internal/childproc instead, which also holds the starting
// thread.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
