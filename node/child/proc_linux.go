package child

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel SIGKILL the child when the node dies, even by SIGKILL, so
// no orphan keeps computing. Pdeathsig fires when the *thread* that started the child exits;
// Go's threads live as long as the process unless a goroutine exits while locked to one, and
// Runner never starts the child from a locked goroutine. The end of stdin is the second,
// portable guard: the child exits when its parent's end of the pipe closes.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
