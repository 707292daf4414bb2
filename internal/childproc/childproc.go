// Package childproc starts child processes that die with the process that started them, even
// when it is SIGKILLed: a node's compute child (which would otherwise keep computing on the
// owner's machine), the nodes of hydra demo, the tests' nodes.
package childproc

import (
	"os/exec"
	"runtime"
)

// Start starts cmd so that the kernel SIGKILLs it when this process dies, however it dies, where
// the kernel can (Linux's parent-death signal; elsewhere nothing is set, and the caller needs
// its own guard, such as the end of a pipe). exited must be closed once cmd has exited (after
// its Wait returns). The signal fires when the thread that started the child ends, not the
// process, and Go ends a thread when a goroutine exits while locked to it (code elsewhere may
// do that, e.g. for network namespaces), so cmd is started from a goroutine that locks its
// thread and keeps it until exited is closed (golang/go#27505). Fields of cmd.SysProcAttr that
// are already set are kept.
func Start(cmd *exec.Cmd, exited <-chan struct{}) error {
	dieWithParent(cmd)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			<-exited
		}
	}()
	return <-started
}
