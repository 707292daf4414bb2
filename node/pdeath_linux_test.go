//go:build linux

package node

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
)

// dieWithTheTest makes the kernel SIGKILL a process the tests start when the test binary dies,
// even by SIGKILL or a -timeout panic, whose cleanups never run: a node left running keeps
// its ports, its data directory and whatever files it inherited (a lock a later run waits on).
func dieWithTheTest(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// pdeathHelperEnv makes TestHarnessProcsDieWithTheTestBinary, run in a child test binary,
// start a process as the system tests start their nodes (proc.start) and wait to be killed.
const pdeathHelperEnv = "HYDRA_TEST_PDEATH_HELPER"

// A test binary killed outright (as -timeout's panic ends it, skipping every cleanup) takes
// the processes its harness started with it. Before, they ran on: on this machine a killed
// run's nodes held an inherited lock for half an hour.
func TestHarnessProcsDieWithTheTestBinary(t *testing.T) {
	if os.Getenv(pdeathHelperEnv) == "1" {
		p := &proc{t: t, bin: "sleep", name: "sleeper", dir: t.TempDir() + "/data", args: []string{"600"}}
		p.start()
		fmt.Printf("pid %d\n", p.cmd.Process.Pid)
		<-p.exited // until killed with the binary (or the sleep ends)
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHarnessProcsDieWithTheTestBinary$", "-test.timeout", "15m")
	cmd.Env = append(os.Environ(), pdeathHelperEnv+"=1")
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
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // if it outlived the binary
	if !running(pid) {
		t.Fatalf("the helper's process %d is not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, 10*time.Second, "the process the killed test binary started to die", func() error {
		if running(pid) {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
}

// running reports whether pid runs (a zombie, dead but not reaped yet, does not).
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
