package childproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/procstat"
)

// helperEnv makes TestChildDiesWithItsParent, run in a child test binary, start a process
// with Start and wait to be killed.
const helperEnv = "HYDRA_TEST_CHILDPROC_HELPER"

// A process started with Start dies when the process that started it is SIGKILLed (as a
// -timeout panic or the OOM killer ends it, with no cleanup), even when it was started from a
// goroutine that has since ended. Without the parent-death signal it runs on.
func TestChildDiesWithItsParent(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		cmd := exec.Command("sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kept
		exited := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- Start(cmd, exited) }() // its goroutine ends at once
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if pgid, err := syscall.Getpgid(cmd.Process.Pid); err != nil || pgid != cmd.Process.Pid {
			t.Fatalf("the child's process group is %d (%v): Start dropped Setpgid", pgid, err)
		}
		fmt.Printf("pid %d\n", cmd.Process.Pid)
		_ = cmd.Wait()
		close(exited)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestChildDiesWithItsParent$", "-test.timeout", "15m")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if err != nil || perr != nil || pid <= 0 {
		t.Fatalf("the helper printed %q (%v, %v)", line, err, perr)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // if it outlived its parent
	if !procstat.Running(pid) {
		t.Fatalf("the helper's child %d is not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for procstat.Running(pid) {
		select {
		case <-deadline.C:
			t.Fatalf("process %d, whose parent was SIGKILLed, still runs 10 s later", pid)
		case <-tick.C:
		}
	}
}

// A command that cannot start says why, and Start does not wait for exited.
func TestStartError(t *testing.T) {
	err := Start(exec.Command("/nonexistent/hydra-childproc-test"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start of a missing program: %v, want an error wrapping os.ErrNotExist", err)
	}
}
